"""Poison records, as properties: whatever bytes reach jobs.events, only ``events.decode`` may
refuse them, and only with ``InvalidEvent``. An event it accepts never breaks what consumers do
with it next: the fold, the dispatcher's state snapshot, the webhook body, the API's projection
and its responses.

Three sources of records: arbitrary JSON documents (deep, odd, huge, non-ASCII), valid events
with one field mutated, and arbitrary bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobwire import events
from jobwire.api.projection import ListQuery, Projection
from jobwire.api.store import Store
from jobwire.dispatch.state import JobState
from jobwire.errors import InvalidEvent
from jobwire.kafka.readers import to_log_record
from jobwire.lifecycle import Job, apply
from jobwire.task import task_object
from jobwire.webhooks import model as webhooks

PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- JSON values, including what breaks naive consumers ----------------------------------------

#: Stands for a value nested ``n`` levels deep; spliced in as JSON text after encoding, since
#: no JSON encoder writes thousands of levels.
DEEP = re.compile(rb'"\\u0000deep:(\d+)"')


def deep(levels: int) -> str:
    return f"\x00deep:{levels}"


def deep_json(levels: int) -> bytes:
    opening = b"".join(b"[" if i % 2 else b'{"a":' for i in range(levels))
    closing = b"".join(b"]" if i % 2 else b"}" for i in reversed(range(levels)))
    return opening + closing


def render(document: Any, ensure_ascii: bool = False) -> bytes:
    """JSON text of ``document``: stdlib json writes integers of any size and, with
    ``ensure_ascii``, lone surrogates as escapes; ``deep`` markers become deep nesting."""
    text = json.dumps(document, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    return DEEP.sub(lambda match: deep_json(int(match.group(1))), text)


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=2**63 - 2, max_value=2**64 + 2), st.integers(min_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -0.0, 5.0, 2.0**64]),
    st.text(max_size=12), st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(["", "\u2028", "😀" * 3, "\x00", "ü" * 5, "\\", '"']),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=16,
)
deep_values = st.integers(min_value=50, max_value=1100).map(deep)
objects = st.dictionaries(st.text(max_size=6), json_values | deep_values, max_size=4)

# --- timestamps: real ones at the edges of time, well-shaped impossible ones, garbage ----------

well_shaped_times = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z")
real_times = st.builds(
    lambda y, mo, d, h, mi, s, frac, offset: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{offset}",
    st.integers(1, 9999), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
    st.integers(0, 59), st.sampled_from(["", ".1", ".123", ".123456789"]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+05:30"]),
)
times = st.one_of(
    real_times, well_shaped_times, st.text(max_size=30),
    st.sampled_from(["2026-13-45T10:00:00Z", "2026-13-45T10:00:00.000Z", "0000-01-01T00:00:00Z",
                     "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01", "2026-11-23T23:59:60Z",
                     "2026-02-29T00:00:00Z", "2026-11-23T10:00:00+24:00"]),
)

# --- valid events, per type ----------------------------------------------------------------------

ids = st.from_regex(r"\A[A-Za-z0-9_.:-]{1,24}\Z")
counts = st.integers(min_value=0, max_value=2**63 - 1) | st.sampled_from([0, 1, 10])
optional_text = st.none() | st.text(max_size=20)


def maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "job.created": st.fixed_dictionaries(
        {"operation": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:/-]{0,20}\Z"), "parameters": objects},
        optional={"metadata": st.none() | objects, "idempotency_key": st.none() | st.text(min_size=1, max_size=20),
                  "input": st.fixed_dictionaries({"file_id": st.just("file_1"), "awaiting_upload": st.booleans()},
                                                 optional={"upload_timeout_s": st.floats(1, 86400)}),
                  **{name: st.floats(1, 31536000) for name in ("timeout_s", "pending_timeout_s", "heartbeat_timeout_s")}}),
    "job.started": maybe(stage=optional_text),
    "job.heartbeat": st.just({}),
    "job.progress": st.fixed_dictionaries({"total": counts, "processed": counts}, optional={"stage": optional_text}),
    "job.completed": st.fixed_dictionaries(
        {"result": objects},
        optional={"result_url": st.none() | st.just("https://files.example/out.pdf"),
                  "result_url_expires_at": st.none() | real_times,
                  "result_checksum": st.none() | st.fixed_dictionaries(
                      {"algorithm": st.sampled_from(["md5", "sha256"]), "value": st.text(min_size=1, max_size=8)})}),
    "job.failed": st.fixed_dictionaries(
        {"error": st.fixed_dictionaries({"code": st.text(min_size=1, max_size=8), "message": st.text(max_size=20)},
                                        optional={"details": st.none() | objects})},
        optional={"retryable": st.booleans()}),
    "job.cancel_requested": maybe(reason=optional_text),
    "job.canceled": maybe(reason=optional_text),
    "job.input_received": st.fixed_dictionaries(
        {"file_id": st.from_regex(r"\Afile_[A-Za-z0-9]{1,10}\Z"), "size": counts,
         "sha256": st.from_regex(r"\A[0-9a-f]{64}\Z"), "content_type": st.sampled_from(["application/pdf", "text/plain"]),
         "filename": st.text(min_size=1, max_size=10)}),
}


@st.composite
def valid_documents(draw: st.DrawFn, event_type: str | None = None) -> dict[str, Any]:
    kind = event_type or draw(st.sampled_from(events.EVENT_TYPES))
    return {
        "specversion": "1.0", "id": draw(ids), "type": kind, "source": draw(st.text(min_size=1, max_size=10)),
        "subject": "job_p", "time": draw(real_times), "tenant": "acme", "datacontenttype": "application/json",
        "data": draw(DATA[kind]),
    }


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``value`` a mutation can hit, to three levels."""
    found = [prefix] if prefix else []
    if len(prefix) < 3:
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in items:
            found += paths(child, (*prefix, key))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one field replaced (by a time, any JSON, deep nesting) or removed."""
    document = draw(valid_documents())
    # Half the mutations hit data, where most of the fields the fold reads are.
    in_data = paths(document["data"], ("data",))
    targets = in_data if draw(st.booleans()) and in_data else paths(document)
    path = draw(st.sampled_from(targets))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.integers(0, 5)) == 0:
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(st.one_of(times, json_values, deep_values))
    return document


records = st.one_of(
    st.builds(render, json_values | deep_values, st.booleans()),
    st.builds(render, valid_documents(), st.booleans()),
    st.builds(render, mutated_documents(), st.booleans()),
    st.binary(max_size=64),
)

# --- what consumers do with an event -------------------------------------------------------------


def decoded(raw: bytes) -> events.Event | None:
    try:
        return events.decode(raw)
    except InvalidEvent:
        return None  # the one way decode may refuse a record


def consumers_use(job: Job | None, event: events.Event) -> Job | None:
    """The fold, then what the dispatcher and the API do with the job it produced."""
    outcome = apply(job, event)
    after = outcome.job
    if after is None:
        return None
    snapshot = JobState(after, 0, event.id if outcome.became_terminal else None)
    assert JobState.decode(snapshot.encode()).job == after, "the dispatcher restores what it saved"
    orjson.dumps(task_object(after))  # GET /v1/jobs/{id}
    if after.status.terminal:
        webhooks.job_payload(after)
    return after


def starting_jobs(tenant: str) -> list[Job | None]:
    """No job, a pending one and a processing one, owned by the events' tenant."""
    created = events.decode(render({
        "specversion": "1.0", "id": "evt_seed", "type": "job.created", "source": "/t", "subject": "job_p",
        "time": "2026-11-23T10:00:00Z", "tenant": tenant, "data": {"operation": "ocr", "parameters": {}},
    }))
    pending = apply(None, created).job
    assert pending is not None
    return [None, pending, pending._replace(status=type(pending.status)("processing"))]


@PROPERTY
@given(st.lists(records, min_size=1, max_size=6))
def test_decode_refuses_only_with_invalid_event_and_nothing_fails_after_it(raws: list[bytes]) -> None:
    decodable = [event for event in map(decoded, raws) if event is not None]
    for job in starting_jobs("acme"):
        for event in decodable:
            job = consumers_use(job, event)


@PROPERTY
@given(st.lists(mutated_documents(), min_size=1, max_size=4), st.booleans())
def test_mutated_events_in_sequence(documents: list[dict[str, Any]], ensure_ascii: bool) -> None:
    decodable = [event for event in (decoded(render(d, ensure_ascii)) for d in documents) if event is not None]
    for job in starting_jobs("acme"):
        for event in decodable:
            job = consumers_use(job, event)


@PROPERTY
@given(st.lists(st.one_of(valid_documents("job.created"), valid_documents(), mutated_documents()),
                min_size=1, max_size=8))
def test_the_projection_takes_any_record(documents: list[dict[str, Any]]) -> None:
    projection = Projection(Store(None))
    for offset, document in enumerate(documents):
        record = ConsumerRecord("jobs.events", 0, offset, 0, 0, b"job_p", render(document), None, 0, 0, ())
        projection.apply_record(to_log_record(record))
    assert projection.applied == {0: len(documents)}
    for job in projection.list(ListQuery("acme", limit=200))[0]:
        orjson.dumps(task_object(job))


@PROPERTY
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_invalid_events_or_events(raw: bytes) -> None:
    event = decoded(raw)
    if event is not None:
        for job in starting_jobs(event.tenant):
            consumers_use(job, event)


@PROPERTY
@given(times)
def test_a_time_decode_accepts_is_one_the_fold_can_read(time: str) -> None:
    document = {"specversion": "1.0", "id": "evt_t", "type": "job.created", "source": "/t", "subject": "job_p",
                "time": time, "tenant": "acme", "data": {"operation": "ocr", "parameters": {}}}
    event = decoded(render(document))
    if event is not None:
        job = consumers_use(None, event)
        assert job is not None and len(job.created_at) == 24
