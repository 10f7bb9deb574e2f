"""The newcomer path: commands find the running dev stack without flags; a healthy start-up
prints no client-library errors."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from jobwire.cli import _api_url, _first_key
from jobwire.config import load_settings
from jobwire.devtools.stack import RunningStack, running_stack, stack_file, write_stack
from jobwire.logging_setup import StartupGrace


def test_the_dev_stack_file_is_private_and_found_while_its_supervisor_lives(tmp_path: Path) -> None:
    settings = load_settings({"JOBWIRE_DATA_DIR": str(tmp_path)})
    assert running_stack(settings) is None
    path = write_stack(settings, RunningStack("http://127.0.0.1:8123", "dev_key"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert running_stack(settings) == RunningStack("http://127.0.0.1:8123", "dev_key")
    assert _first_key(settings, None) == "dev_key" and _api_url(settings, None) == "http://127.0.0.1:8123"
    assert _first_key(settings, "given") == "given" and _api_url(settings, "http://x") == "http://x"


def test_a_stale_stack_file_is_ignored(tmp_path: Path) -> None:
    settings = load_settings({"JOBWIRE_DATA_DIR": str(tmp_path)})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stack_file(settings).write_text(f'{{"url": "http://127.0.0.1:1", "api_key": "k", "pid": {gone.stdout.strip()}}}')
    assert running_stack(settings) is None
    stack_file(settings).write_text("not json")
    assert running_stack(settings) is None
    with pytest.raises(SystemExit, match="make run"):
        _first_key(settings, None)
    assert _api_url(settings, None) == "http://127.0.0.1:8000"


def test_configured_keys_come_before_the_dev_stack(tmp_path: Path) -> None:
    settings = load_settings({"JOBWIRE_DATA_DIR": str(tmp_path), "JOBWIRE_API_KEYS": "acme:key_acme_0123456789"})
    write_stack(settings, RunningStack("http://127.0.0.1:8123", "dev_key"))
    assert _first_key(settings, None) == "key_acme_0123456789"


def record(level: int) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.consumer.group_coordinator", level, __file__, 1, "coordinator dead", (), None)


def test_library_errors_read_as_info_during_start_up_only() -> None:
    now = [0.0]
    grace = StartupGrace(30, "aiokafka", clock=lambda: now[0])
    early = record(logging.ERROR)
    assert grace.filter(early) and early.levelno == logging.INFO and early.getMessage().startswith("(starting)")
    ours = logging.LogRecord("jobwire.dispatch", logging.ERROR, __file__, 1, "real", (), None)
    assert grace.filter(ours) and ours.levelno == logging.ERROR
    now[0] = 31
    late = record(logging.ERROR)
    assert grace.filter(late) and late.levelno == logging.ERROR and late.levelname == "ERROR"
