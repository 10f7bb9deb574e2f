"""schemathesis against the running API (real broker): every response conforms to
schemas/openapi.yaml and nothing a client sends produces a 500."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from jobwire import events
from jobwire.api.profiles.model import available
from jobwire.api.system import openapi_document
from jobwire.config import Settings
from jobwire.events import new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from jobwire.topics import Topics
from tests.conftest import settings_for
from tests.support.servers import api_in_thread

KEY = "key_acme_0123456789"
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"})


@pytest.fixture(scope="module")
def live_api(kafka_bootstrap: str) -> Iterator[str]:
    # Quotas out of reach: hypothesis replays a sequence to shrink it, and an answer that
    # depends on how many endpoints, secrets or jobs earlier examples left behind would make
    # the replay differ (the quotas have tests of their own).
    api_settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{KEY}",
                                JOBWIRE_SECRET_KEY="conformance-secret-0123456789",
                                JOBWIRE_ENDPOINTS_PER_TENANT="100000", JOBWIRE_SECRETS_PER_ENDPOINT="100",
                                JOBWIRE_UNFINISHED_JOBS_PER_TENANT="100000000")
    asyncio.run(ensure_topics(api_settings))
    asyncio.run(one_job_per_partition(api_settings))
    with api_in_thread(api_settings) as url:
        yield url


async def one_job_per_partition(api_settings: Settings) -> None:
    """A record at offset 0 of every partition, so a position ``p:0`` (what ``tame`` sends)
    is always applied and a read carrying it never waits."""
    producer = make_producer(api_settings.kafka)
    await producer.start()
    try:
        for partition in range(PARTITIONS):
            event = new_event("job.created", f"job_seed{partition}", "acme", {"operation": "seed", "parameters": {}})
            await producer.send_and_wait(Topics(api_settings.topic_prefix).events, events.encode(event),
                                         key=event.subject.encode(), partition=partition)
    finally:
        await producer.stop()


# The very document /openapi.json serves (asserted below); loaded eagerly because
# schemathesis' lazy fixture loader relies on a pytest private that pytest 9 removed.
# The stateful phase follows the spec's own links only: links schemathesis infers from list
# responses depend on what earlier examples left on the server, which Hypothesis reports as
# flaky data generation.
# Every wire profile is mounted (JOBWIRE_PROFILES' default), so the document has their paths.
DOCUMENT = orjson.loads(openapi_document(tuple(available())))
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=SchemathesisConfig.from_dict({"phases": {"stateful": {"inference": {"algorithms": []}}}}),
)


def test_served_document_is_the_one_tested(live_api: str) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{live_api}/openapi.json", timeout=10) as response:
        assert orjson.loads(response.read()) == DOCUMENT


EXAMPLES_PER_OPERATION = 200
HYPOTHESIS = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
POSITION = re.compile(DOCUMENT["components"]["parameters"]["Position"]["schema"]["pattern"])
#: (method, path) of the profiles' submits that wait for the job unless a body member is true
#: (Pulse's sync mode), and that member.
WAITS_UNLESS = {(method.upper(), path): operation["x-jobwire-waits-unless"]
                for path, item in DOCUMENT["paths"].items() for method, operation in item.items()
                if isinstance(operation, dict) and "x-jobwire-waits-unless" in operation}
#: Partitions of the test topic (JOBWIRE_EVENTS_PARTITIONS in tests/conftest.py).
PARTITIONS = 3


def tame(case: schemathesis.Case) -> None:
    """Keep generated requests fast without leaving the schema.

    A long-poll (``Prefer: wait=N``), a profile's synchronous submit and a ``Jobwire-Position``
    of a record not yet written make a request wait by design (up to 60 s, or 5 s then 503);
    they have their own tests. So waits are shortened to 0.2 s, a profile's submit asks for the
    asynchronous answer, and a position on an existing partition is moved to offset 0. A
    position on a partition the log does not have is kept: it is answered 422 at once.
    """
    switch = WAITS_UNLESS.get((case.method.upper(), case.operation.path))
    if switch is not None and isinstance(case.body, dict):
        case.body[switch] = True  # Pulse's sync mode waits up to 60 s for a job no worker runs
    if not case.headers:
        return
    if "wait=" in case.headers.get("Prefer", ""):
        case.headers["Prefer"] = "wait=0.2"
    position = case.headers.get("Jobwire-Position")
    if position is not None and ":" in position:
        partition = position.split(":", 1)[0]
        if partition.isascii() and partition.isdigit() and int(partition) < PARTITIONS:
            case.headers["Jobwire-Position"] = f"{int(partition)}:0"
    # Framing headers belong to the HTTP client, not to API input: a generated, malformed
    # Content-Length is answered 400 by the HTTP parser before any route sees the request.
    for name in [h for h in case.headers if h.lower() in FRAMING_HEADERS]:
        del case.headers[name]


#: Body fields whose values the server checks beyond their schema (policy, PEM parsing).
POLICY_FIELDS = frozenset({"url", "webhook_url", "headers", "tls_client_cert", "tls_ca"})


def excluded_checks(case: schemathesis.Case) -> list[Any]:
    """Checks that cannot hold for this case, each for a reason no schema can express."""
    if (case.query and "cursor" in case.query) or (isinstance(case.body, dict) and POLICY_FIELDS & set(case.body)):
        # A schema-valid request answered 422 on purpose: a cursor this API never issued (it
        # is opaque); a webhook URL refused by policy (https outside dev mode, the SSRF guard
        # on internal addresses); a header an endpoint may not set; TLS material that is no
        # certificate, or a key that is not the certificate's.
        return [positive_data_acceptance]
    if isinstance(case.body, dict) and "input" in case.body:
        # A job's input names a file by id (jobwire's input.file_id, Scan Documents' input):
        # schema-valid, answered 404 or 422 when the tenant has no such file, as a cursor is.
        return [positive_data_acceptance]
    if "X-Checksum-SHA256" in (case.headers or {}):
        # A checksum is a claim about the bytes: a generated one that does not match them is
        # refused (400, as S3's BadDigest), whatever the schema says of its shape.
        return [positive_data_acceptance]
    position = (case.headers or {}).get("Jobwire-Position")
    if position is not None and not POSITION.fullmatch(position):
        # schemathesis' coverage phase sends values such as "0" here as schema-valid although
        # the parameter's pattern refuses them; the server answers 400, as the schema says.
        return [positive_data_acceptance]
    if position is not None and int(position.split(":", 1)[0]) >= PARTITIONS:
        # Schema-valid, answered 422 at once: how many partitions the log has is a property of
        # the deployment, not of the API's schema.
        return [positive_data_acceptance]
    return []


@schema.parametrize()
# schemathesis' own strategies call `random` inside Hypothesis, which Hypothesis deprecates;
# that is theirs to fix and says nothing about our API.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@HYPOTHESIS
@pytest.mark.timeout(900)
def test_api_conforms_to_its_openapi(case: schemathesis.Case, live_api: str) -> None:
    tame(case)
    response = case.call_and_validate(base_url=live_api, headers={"Authorization": f"Bearer {KEY}"},
                                      excluded_checks=excluded_checks(case))
    assert response.status_code < 500, response.text


LIVE: dict[str, str] = {}


class Workflows(schema.as_state_machine()):  # type: ignore[misc]
    """Sequences that follow the spec's links: a job submitted, then read, canceled, given
    events; an endpoint created, then updated, tested, its deliveries read and retried."""

    def before_call(self, case: schemathesis.Case) -> None:
        tame(case)
        key = (case.headers or {}).get("Idempotency-Key")
        if key:
            # A key replayed from an earlier example names that example's job, whose state has
            # moved on: answers would depend on history, which Hypothesis reports as flaky
            # generation. Idempotency has its own tests; here each key is made new.
            case.headers["Idempotency-Key"] = key[:200] + uuid.uuid4().hex

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"base_url": LIVE["url"], "headers": {"Authorization": f"Bearer {KEY}"}}

    def validate_response(self, response: Any, case: schemathesis.Case, additional_checks: Any = None,
                          **kwargs: Any) -> None:
        assert response.status_code < 500, response.text
        case.validate_response(response, excluded_checks=excluded_checks(case), transport_kwargs=kwargs or None)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.timeout(900)
def test_linked_workflows_conform(live_api: str) -> None:
    LIVE["url"] = live_api
    Workflows.run(settings=settings(max_examples=EXAMPLES_PER_OPERATION, stateful_step_count=8, deadline=None,
                                    database=None, suppress_health_check=list(HealthCheck)))
