"""Content filters: which jobs an endpoint's filter takes, checked against a plain model of
the rules over generated jobs and filters; the API refuses a malformed filter naming the field,
and an endpoint without one is encoded as before filters existed."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from jobwire.api.app import create_app
from jobwire.config import load_settings
from jobwire.events import new_event
from jobwire.lifecycle import Job, fold
from jobwire.webhooks.filters import matches
from jobwire.webhooks.model import Endpoint
from tests.support.memlog import memory_components

KEY = {"X-API-Key": "key_acme_0123456789"}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["ocr", "parse", "x", "timeout", ""]))


def job(operation: str, metadata: dict[str, Any] | None, failed_code: str | None) -> Job:
    events = [new_event("job.created", "job_1", "acme", {"operation": operation, "parameters": {}, "metadata": metadata})]
    if failed_code is not None:
        events.append(new_event("job.failed", "job_1", "acme", {"error": {"code": failed_code, "message": "m"}}))
    else:
        events.append(new_event("job.completed", "job_1", "acme", {"result": {}}))
    found = fold(events)
    assert found is not None
    return found


def test_each_kind_of_condition() -> None:
    done = job("ocr", {"customer": "acme", "pages": 3, "urgent": True}, None)
    failed = job("parse", None, "timeout")
    assert matches(None, done) and matches({}, done)
    assert matches({"operation": "ocr"}, done) and not matches({"operation": "ocr"}, failed)
    assert matches({"operation": {"in": ["parse", "ocr"]}, "status": "completed"}, done)
    assert matches({"error.code": "timeout", "status": {"in": ["failed"]}}, failed)
    assert matches({"error.code": None}, done), "no error: error.code is null"
    assert matches({"metadata.customer": "acme", "metadata.pages": 3}, done)
    assert not matches({"metadata.customer": "acme"}, failed), "no metadata: the key is null"
    assert matches({"metadata.customer": None}, failed)
    assert not matches({"metadata.urgent": 1}, done) and matches({"metadata.urgent": True}, done), "true is not 1"
    assert not matches({"metadata.pages": True}, done)


@settings(max_examples=300, deadline=None)
@given(operation=st.sampled_from(["ocr", "parse"]), metadata=st.none() | st.dictionaries(st.sampled_from(["a", "b"]), SCALARS, max_size=2),
       code=st.none() | st.sampled_from(["timeout", "x"]),
       conditions=st.dictionaries(st.sampled_from(["operation", "status", "error.code", "metadata.a", "metadata.b"]),
                                  SCALARS | st.builds(lambda v: {"in": v}, st.lists(SCALARS, min_size=1, max_size=3)),
                                  max_size=4))
def test_a_filter_takes_a_job_exactly_when_every_condition_holds(operation: str, metadata: dict[str, Any] | None,
                                                                   code: str | None, conditions: dict[str, Any]) -> None:
    found = job(operation, metadata, code)
    fields = {"operation": operation, "status": "failed" if code else "completed", "error.code": code,
              "metadata.a": (metadata or {}).get("a"), "metadata.b": (metadata or {}).get("b")}

    def same(a: Any, b: Any) -> bool:
        return (type(a) is type(b) or not isinstance(a, bool) and not isinstance(b, bool)) and a == b

    expected = all(any(same(fields[f], o) for o in c["in"]) if isinstance(c, dict) else same(fields[f], c)
                   for f, c in conditions.items())
    assert matches(conditions, found) is expected


def test_the_api_keeps_a_valid_filter_and_names_the_fault_of_a_bad_one() -> None:
    parts, _, _ = memory_components()
    settings_ = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_DEV": "1"})
    with TestClient(create_app(settings_, parts)) as client:
        wanted = {"operation": {"in": ["ocr"]}, "metadata.customer": "acme", "error.code": None}
        created = client.post("/v1/webhooks/endpoints", headers=KEY,
                              json={"url": "https://hooks.example.com/a", "filter": wanted})
        assert created.status_code == 201 and created.json()["filter"] == wanted
        endpoint_id = created.json()["id"]
        for bad, pointer in (({"tenant": "x"}, "/filter"), ({"operation": {"in": []}}, "/filter/operation"),
                             ({"operation": {"eq": "x"}}, "/filter/operation"), ({"operation": ["x"]}, "/filter/operation"),
                             ({}, "/filter")):
            refused = client.post("/v1/webhooks/endpoints", headers=KEY, json={"url": "https://hooks.example.com/b", "filter": bad})
            assert refused.status_code == 422, bad
            assert any(e["pointer"].startswith(pointer) for e in refused.json()["errors"]), (bad, refused.json())
        patched = client.patch(f"/v1/webhooks/endpoints/{endpoint_id}", headers=KEY, json={"filter": None})
        assert patched.status_code == 200 and patched.json()["filter"] is None


def test_an_endpoint_without_a_filter_is_encoded_as_before_filters() -> None:
    plain = Endpoint("ep_1", "acme", "https://h.example", "t", "t", ())
    assert b'"filter"' not in plain.encode() and b'"signing"' not in plain.encode()
    filtered = plain.with_changes(filter={"operation": "ocr"})
    assert Endpoint.decode(filtered.encode()) == filtered and Endpoint.decode(plain.encode()) == plain
