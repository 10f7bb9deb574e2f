"""Per-endpoint lanes: fairness, per-endpoint limits, rate limits that never block other lanes,
and the memory bound."""

from __future__ import annotations

import asyncio

from jobwire.dispatch.lanes import HELD_WAIT_S, LANE_WAIT_S, Lanes, Source, Work
from jobwire.offsets import OffsetTracker
from jobwire.webhooks.model import Delivery

TRACKER = OffsetTracker()


def work(endpoint: str, n: int, body: bytes = b"{}", tenant: str = "acme") -> Work:
    delivery = Delivery(f"msg_{endpoint}_{n}", endpoint, tenant, "task.completed", f"evt_{n}", "job_1", body,
                        "2026-01-01T00:00:00.000Z")
    return Work(delivery, Source(TRACKER, 0, n, 1))


def lanes(**options: int) -> Lanes:
    return Lanes(**{"in_flight_per_endpoint": 2, "queue_per_endpoint": 100, "max_deliveries": 1000,
                    "max_bytes": 1 << 20, **options})


async def test_round_robin_across_endpoints() -> None:
    subject = lanes(in_flight_per_endpoint=100)
    for n in range(10):
        subject.push(work("busy", n), None)
    subject.push(work("quiet", 0), None)
    taken = [(await subject.take())[1].delivery.endpoint_id for _ in range(3)]
    assert "quiet" in taken[:2], "a second endpoint is served after at most one of the first's"


async def test_in_flight_limit_holds_a_lane_not_the_others() -> None:
    subject = lanes(in_flight_per_endpoint=2)
    for n in range(5):
        subject.push(work("slow", n), None)
    held = [await subject.take() for _ in range(2)]
    subject.push(work("fast", 0), None)
    lane, next_work = await asyncio.wait_for(subject.take(), 1)
    assert next_work.delivery.endpoint_id == "fast", "the slow lane's full slots block only itself"
    subject.release(*held[0])
    _, again = await asyncio.wait_for(subject.take(), 1)
    assert again.delivery.endpoint_id == "slow"


async def test_a_rate_limited_lane_waits_without_holding_a_sender() -> None:
    subject = lanes(in_flight_per_endpoint=100)
    for n in range(3):
        subject.push(work("limited", n), 0.5)  # one token, then one every 2 s
    first = await subject.take()
    assert first[1].delivery.endpoint_id == "limited"
    subject.release(*first)
    subject.push(work("free", 0), None)
    _, served = await asyncio.wait_for(subject.take(), 1)
    assert served.delivery.endpoint_id == "free", "no token for the limited lane: others go first"
    waiting = asyncio.create_task(subject.take())
    await asyncio.sleep(0.3)
    assert not waiting.done(), "the limited lane's next token is 2 s away"
    lane, later = await asyncio.wait_for(waiting, 5)
    assert later.delivery.endpoint_id == "limited"


async def test_a_tiny_rate_limit_is_raised_to_the_floor() -> None:
    subject = lanes()
    subject.push(work("crawl", 0), 1e-9)
    assert subject.lanes["crawl"].rate == 0.1


async def test_bounds_and_low_water() -> None:
    subject = lanes(max_deliveries=4, queue_per_endpoint=3)
    for n in range(3):
        subject.push(work("a", n), None)
    assert not subject.has_room("a") and subject.has_room("b")
    subject.push(work("b", 0), None)
    assert subject.full and subject.room() == 0
    taken = [await subject.take() for _ in range(3)]
    for item in taken:
        subject.release(*item)
    assert not subject.full and subject.drained


async def test_byte_bound() -> None:
    subject = lanes(max_bytes=4096)
    subject.push(work("a", 0, b"x" * 4000), None)
    assert subject.full


async def test_drop_removes_queued_work_only() -> None:
    subject = lanes()
    for n in range(4):
        subject.push(work("a", n), None)
    in_flight = await subject.take()
    dropped = subject.drop(lambda w: True)
    assert len(dropped) == 3 and subject.deliveries == 1
    subject.release(*in_flight)
    assert subject.deliveries == 0 and subject.bytes == 0


async def test_a_lane_that_proves_slow_gives_back_its_excess() -> None:
    subject = lanes(in_flight_per_endpoint=2, queue_per_endpoint=1000)
    for n in range(100):
        assert subject.has_room("slow"), "pace unknown: work is taken"
        subject.push(work("slow", n), None)
    lane, first = await subject.take()
    first.started_at -= 2.0  # the attempt took 2 s: with 2 slots, one per second
    subject.release(lane, first)
    assert lane.latency is not None and lane.latency >= 2.0
    spilled = subject.overflow(lane)
    kept = subject.deliveries
    assert 4 <= kept <= 5, "about 5 s of work at 1 s each stays"
    assert len(spilled) == 99 - kept and spilled[0].delivery.id == f"msg_slow_{kept + 1}", "the newest go, in order"
    assert subject.drain_s("slow") <= 5.0 < subject.drain_s("slow", more=1)


async def test_a_tenant_with_many_hanging_endpoints_holds_only_its_share_of_the_senders() -> None:
    # 16 endpoints x 16 in flight would take all 256 senders; with another tenant's work
    # ready, the hostile tenant gets half of them and the rest go to the other tenant.
    subject = lanes(in_flight_per_endpoint=16, max_deliveries=100_000, senders=256)
    for endpoint in range(16):
        for n in range(40):
            subject.push(work(f"hole{endpoint}", n, tenant="mallory"), None)
    for n in range(200):
        subject.push(work("fine", n, tenant="acme"), None)
    subject.in_flight_per_endpoint = 200  # acme's single endpoint may use many senders
    taken = [await asyncio.wait_for(subject.take(), 1) for _ in range(256)]  # every sender busy, none released
    by_tenant = {t: sum(1 for lane, _ in taken if lane.tenant == t) for t in ("mallory", "acme")}
    assert by_tenant == {"mallory": 128, "acme": 128}, by_tenant


async def test_a_tenant_alone_may_use_every_sender() -> None:
    subject = lanes(in_flight_per_endpoint=16, max_deliveries=100_000, senders=64)
    for endpoint in range(8):
        for n in range(10):
            subject.push(work(f"ep{endpoint}", n, tenant="acme"), None)
    taken = [await asyncio.wait_for(subject.take(), 1) for _ in range(64)]
    assert len(taken) == 64
    # Another tenant's work arrives: it is served next, though acme holds every sender's worth.
    subject.push(work("other", 0, tenant="globex"), None)
    subject.release(*taken[0])
    lane, _ = await asyncio.wait_for(subject.take(), 1)
    assert lane.tenant == "globex"


async def test_over_its_share_a_tenant_is_still_served_when_no_other_work_is_ready() -> None:
    subject = lanes(in_flight_per_endpoint=4, senders=4)
    subject.push(work("a", 0, tenant="acme"), None)
    subject.push(work("b", 0, tenant="globex"), None)
    subject.push(work("b", 1, tenant="globex"), None)
    subject.push(work("b", 2, tenant="globex"), None)
    taken = [await asyncio.wait_for(subject.take(), 1) for _ in range(4)]
    assert sorted(lane.tenant for lane, _ in taken) == ["acme", "globex", "globex", "globex"]
    assert subject.deliveries == 4
    for lane, item in taken:
        subject.release(lane, item)
    assert subject.deliveries == 0 and not subject._tenant_work and not subject._tenant_in_flight


async def attempt_taking(subject: Lanes, took_s: float, endpoint: str | None = None) -> None:
    """One attempt (of ``endpoint``'s, when named) that took ``took_s``; others taken meanwhile
    end at once."""
    lane, taken = await subject.take()
    while endpoint is not None and taken.delivery.endpoint_id != endpoint:
        subject.release(lane, taken)
        lane, taken = await subject.take()
    taken.started_at -= took_s
    subject.release(lane, taken)


def busy_lanes(busy: list[bool] | None = None) -> Lanes:
    flag = busy if busy is not None else [True]
    return Lanes(in_flight_per_endpoint=2, queue_per_endpoint=1000, max_deliveries=10_000, max_bytes=1 << 30,
                 busy=lambda: flag[0])


async def test_while_the_dispatcher_is_busy_a_backlog_at_the_typical_pace_is_held_not_parked() -> None:
    busy = [True]
    subject = busy_lanes(busy)
    for endpoint in ("a", "b"):
        for n in range(200):
            subject.push(work(endpoint, n), None)
        await attempt_taking(subject, 0.2, endpoint)  # 0.1 s a slot: 199 queued are ~10 s of work
    assert subject.drain_s("a") > 5.0 and subject.drain_s("b") > 5.0
    assert subject.has_room("a") and subject.has_room("b"), "their pace is the dispatcher's, not the endpoints'"
    assert subject.overflow(subject.lanes["a"]) == [], "nothing given back to park"
    busy[0] = False
    assert not subject.has_room("a"), "idle, the dispatcher judges the endpoint by its pace again"
    assert len(subject.overflow(subject.lanes["a"])) > 100


async def test_a_lane_held_at_the_typical_pace_still_holds_no_more_than_its_cap() -> None:
    subject = busy_lanes()
    for n in range(900):
        subject.push(work("a", n), None)
    await attempt_taking(subject, 0.2, "a")  # 0.1 s a slot: ~90 s of work queued
    assert subject.drain_s("a") > HELD_WAIT_S and not subject.has_room("a")
    spilled = subject.overflow(subject.lanes["a"])
    assert spilled and subject.drain_s("a") <= HELD_WAIT_S + 0.1, "past twice the cap, the excess is parked"


async def test_while_the_dispatcher_is_busy_a_slow_endpoint_still_parks() -> None:
    subject = busy_lanes()
    for n in range(100):
        subject.push(work("fast", n), None)
    for _ in range(50):
        await attempt_taking(subject, 0.01, "fast")
    for n in range(100):
        subject.push(work("slow", n), None)
    await attempt_taking(subject, 2.0, "slow")
    assert subject.typical_latency is not None and subject.typical_latency < 1.0
    assert not subject.has_room("slow"), "2 s an attempt is the endpoint's doing"
    assert subject.overflow(subject.lanes["slow"]), "its excess is given back to park"


async def test_while_the_dispatcher_is_busy_a_rate_limited_lane_still_parks() -> None:
    """Its attempts are as fast as anyone's, but its rate limit is its pace: 1 a second."""
    subject = busy_lanes()
    for n in range(50):
        subject.push(work("fast", n), None)
    for _ in range(20):
        await attempt_taking(subject, 0.01, "fast")
    for n in range(30):
        subject.push(work("limited", n), 1.0)
    await attempt_taking(subject, 0.01, "limited")
    assert subject.drain_s("limited") > LANE_WAIT_S
    assert not subject.has_room("limited")
    assert subject.overflow(subject.lanes["limited"]), "what it cannot send in time is parked"


async def test_a_tenant_holds_a_backlog_only_within_its_share_of_the_bound() -> None:
    """Busy, two tenants with work: acme's held lanes stop at half of the bound, so globex's
    records still find room."""
    subject = Lanes(in_flight_per_endpoint=2, queue_per_endpoint=1000, max_deliveries=400, max_bytes=1 << 30,
                    busy=lambda: True)
    for n in range(150):
        subject.push(work("a", n), None)
    await attempt_taking(subject, 0.2, "a")  # 0.1 s a slot: ~15 s of work, within the 30 s held
    assert subject.has_room("a"), "alone, acme may hold its backlog"
    subject.push(work("g", 0, tenant="globex"), None)
    await attempt_taking(subject, 0.2, "g")
    subject.push(work("g", 1, tenant="globex"), None)
    for n in range(150, 250):
        subject.push(work("a", n), None)
    assert subject.drain_s("a") > LANE_WAIT_S
    assert not subject.has_room("a"), "past half of the bound, acme's excess is parked"
    assert subject.has_room("g")
