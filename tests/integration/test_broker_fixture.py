"""The session broker fixture: survives failing tests and leaves no java process behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobwire.devtools.broker import LocalKafka, free_port
from jobwire.kafka.admin import answers_metadata

INNER_TESTS = '''
from jobwire.kafka.admin import answers_metadata

def test_fails_while_using_the_broker(kafka_bootstrap):
    assert answers_metadata(kafka_bootstrap)
    raise AssertionError("deliberate failure")

def test_broker_still_answers_after_a_failure(kafka_bootstrap):
    assert answers_metadata(kafka_bootstrap)
'''


def java_processes_under(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and str(path).encode() in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.timeout(240)
def test_fixture_survives_a_failing_test_and_cleans_up(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makepyfile(test_inner=INNER_TESTS)
    basetemp = tmp_path / "inner"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--basetemp={basetemp}", timeout=200)
    result.assert_outcomes(passed=1, failed=1)
    assert java_processes_under(basetemp) == [], "the broker was stopped at the end of the session"


def test_clear_error_when_the_port_is_taken(kafka_broker: LocalKafka | None, tmp_path: Path) -> None:
    if kafka_broker is None:
        pytest.skip("external cluster: no local broker holds a port")
    second = LocalKafka(kafka_broker.cache_dir, tmp_path, port=kafka_broker.port)
    from jobwire.errors import BrokerError

    with pytest.raises(BrokerError, match=f"port {kafka_broker.port} on 127.0.0.1 is taken"):
        second.start()


def test_broker_restarts_on_the_same_data(kafka_broker: LocalKafka | None, tmp_path: Path) -> None:
    if kafka_broker is None:
        pytest.skip("needs the local broker")
    broker = LocalKafka(kafka_broker.cache_dir, tmp_path, port=free_port())
    broker.start()
    broker.kill()
    assert not answers_metadata(broker.bootstrap, timeout_s=1)
    broker.start()  # after a crash: same data dir, no re-format
    try:
        assert answers_metadata(broker.bootstrap)
    finally:
        broker.stop()
    assert java_processes_under(tmp_path) == []
