"""The audit's ledger (pure): which terminal events owe which endpoints, and which have an outcome."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from jobwire.dispatch.audit import Ledger
from jobwire.events import encode, new_event
from jobwire.webhooks.callbacks import callback_endpoint_id
from jobwire.webhooks.model import Endpoint, SealedSecret, webhook_id


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    topic: str = "t"
    partition: int = 0
    offset: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def endpoint(endpoint_id: str, tenant: str = "acme", types: tuple[str, ...] | None = None,
             filter: dict[str, object] | None = None) -> Rec:
    e = Endpoint(endpoint_id, tenant, "https://example.com/h", "2026-01-01T00:00:00.000Z",
                 "2026-01-01T00:00:00.000Z", (SealedSecret("v2.x.y"),), event_types=types, filter=filter)
    return Rec(endpoint_id.encode(), e.encode())


def finished_job(ledger: Ledger, job_id: str, at_ms: int, tenant: str = "acme", kind: str = "job.completed",
                 webhook: dict[str, object] | None = None) -> str:
    created = new_event("job.created", job_id, tenant, {"operation": "ocr", "parameters": {},
                                                        **({"webhook": webhook} if webhook else {})})
    data = {"result": {}} if kind == "job.completed" else {"error": {"code": "x", "message": "y"}}
    end = new_event(kind, job_id, tenant, data)
    ledger.event(Rec(job_id.encode(), encode(created)), at_ms - 1)
    ledger.event(Rec(job_id.encode(), encode(end)), at_ms)
    return end.id


def test_each_pair_is_classified_and_only_the_missing_fail() -> None:
    ledger = Ledger(0, 10_000)
    ledger.endpoint(endpoint("ep_a"), 100)
    ledger.endpoint(endpoint("ep_b", types=("task.failed",)), 100)
    ledger.endpoint(endpoint("ep_other", tenant="globex"), 100)
    done = finished_job(ledger, "job_1", 1000)
    dead = finished_job(ledger, "job_2", 1000)
    retrying = finished_job(ledger, "job_3", 1000)
    lost = finished_job(ledger, "job_4", 1000)
    ledger.attempt(orjson.dumps({"delivery_id": webhook_id(done, "ep_a"), "outcome": "succeeded"}))
    ledger.dead_letter(orjson.dumps({"id": webhook_id(dead, "ep_a")}))
    ledger.attempt(orjson.dumps({"delivery_id": webhook_id(retrying, "ep_a"), "outcome": "retrying"}))
    report = ledger.report()
    assert report.terminal_events == 4
    assert report.counts == {"delivered": 1, "dead": 1, "dropped": 0, "pending": 1, "missing": 1}
    (missing,) = report.missing
    assert (missing.job_id, missing.endpoint_id, missing.event_id) == ("job_4", "ep_a", lost)
    assert not report.ok and report.to_dict()["missing_pairs"][0]["webhook_id"] == webhook_id(lost, "ep_a")


def test_an_endpoint_is_owed_only_what_was_written_while_it_was_subscribed() -> None:
    ledger = Ledger(0, 10_000)
    ledger.endpoint(endpoint("ep_a"), 500)
    finished_job(ledger, "job_early", 400)  # before the endpoint existed
    ledger.endpoint(Rec(b"ep_a", None), 2000)  # deleted
    finished_job(ledger, "job_late", 3000)  # after
    finished_job(ledger, "job_mid", 1000)
    report = ledger.report()
    assert [m.job_id for m in report.missing] == ["job_mid"]


def test_outside_the_window_and_invalid_records_owe_nothing() -> None:
    ledger = Ledger(5000, 6000)
    ledger.endpoint(endpoint("ep_a"), 0)
    finished_job(ledger, "job_old", 1000)
    ledger.event(Rec(b"job_x", b"not an event"), 5500)
    end = finished_job(ledger, "job_in", 5500)
    ledger.attempt(orjson.dumps({"delivery_id": webhook_id(end, "ep_a"), "outcome": "dropped"}))
    report = ledger.report()
    assert report.ok and report.counts["dropped"] == 1 and report.terminal_events == 1


def test_a_duplicate_terminal_event_owes_once() -> None:
    ledger = Ledger(0, 10_000)
    ledger.endpoint(endpoint("ep_a"), 0)
    created = new_event("job.created", "job_1", "acme", {"operation": "ocr", "parameters": {}})
    end = new_event("job.completed", "job_1", "acme", {"result": {}})
    for event, at in ((created, 10), (end, 20), (end, 30)):
        ledger.event(Rec(b"job_1", encode(event)), at)
    assert ledger.report().counts["missing"] == 1


def test_a_job_an_endpoints_filter_turns_away_is_owed_nothing() -> None:
    ledger = Ledger(0, 10_000)
    ledger.endpoint(endpoint("ep_ocr", filter={"operation": "ocr"}), 100)
    ledger.endpoint(endpoint("ep_failures", filter={"error.code": {"in": ["x"]}}), 100)
    finished_job(ledger, "job_done", 1000)
    finished_job(ledger, "job_failed", 1000, kind="job.failed")
    report = ledger.report()
    owed = sorted((m.job_id, m.endpoint_id) for m in report.missing)
    assert owed == [("job_done", "ep_ocr"), ("job_failed", "ep_failures"), ("job_failed", "ep_ocr")]


def test_a_jobs_callback_is_owed_like_an_endpoint() -> None:
    ledger = Ledger(0, 10_000)
    called = finished_job(ledger, "job_cb", 1000, webhook={"url": "https://client.example/cb"})
    finished_job(ledger, "job_cb_started_only", 1000, webhook={"url": "https://client.example/cb",
                                                                 "events": ["task.started"]})
    lane = callback_endpoint_id("acme", "https://client.example/cb")
    (missing,) = ledger.report().missing
    assert (missing.job_id, missing.endpoint_id, missing.webhook_id) == ("job_cb", lane, webhook_id(called, lane))
    ledger.attempt(orjson.dumps({"delivery_id": webhook_id(called, lane), "outcome": "succeeded"}))
    assert ledger.report().ok


def test_a_delivery_waiting_in_an_ordered_queue_is_pending_until_its_snapshot_lets_it_go() -> None:
    ledger = Ledger(0, 10_000)
    ledger.endpoint(endpoint("ep_a"), 100)
    waiting = finished_job(ledger, "job_1", 1000)
    queued = orjson.dumps({"job": {}, "ordered": [[webhook_id(waiting, "ep_a"), "ep_a", "task.completed", waiting,
                                                   "2026-01-01T00:00:00.000Z", 0, 0, 0]]})
    ledger.snapshot(Rec(b"job_1", queued))
    assert ledger.report().counts["pending"] == 1
    ledger.snapshot(Rec(b"job_1", orjson.dumps({"finished_at": 1.0})))  # a later snapshot without it
    assert ledger.report().counts["missing"] == 1, "only the job's latest snapshot counts"
