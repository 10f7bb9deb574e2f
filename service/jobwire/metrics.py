"""Prometheus metrics, defined once and registered nowhere at import: each composition root
(the API app, the dispatcher command) builds its own registry of the metrics it serves, with
:func:`registry_of`, and exposes that. Importing a module never touches the global registry,
so two apps in one process, or a library user's own registry, see no collisions."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase

INVALID_RECORDS = Counter("jobwire_invalid_records_total",
                          "Records that were not valid events, set aside and skipped", ["topic"], registry=None)
UNDECODABLE_BATCHES = Counter("jobwire_undecodable_batches_total",
                              "Record batches that could not be decoded (codec, corruption, size), skipped",
                              ["topic"], registry=None)
EVENTS_APPLIED = Counter("jobwire_projection_events_total", "Events folded into the projection, by verdict",
                         ["verdict"], registry=None)
PROJECTION_JOBS = Gauge("jobwire_projection_jobs", "Jobs held in the projection", registry=None)
HTTP_LATENCY = Histogram(
    "jobwire_http_request_seconds", "API request latency", ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=None,
)
DELIVERY_OUTCOMES = Counter("jobwire_webhook_attempts_total", "Delivery attempts by outcome", ["outcome"],
                            registry=None)
DELIVERY_LATENCY = Histogram(
    "jobwire_webhook_attempt_seconds", "Latency of delivery attempts",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15), registry=None,
)
DELIVERIES_IN_FLIGHT = Gauge("jobwire_webhook_in_flight", "Delivery attempts in flight", registry=None)
DEAD_LETTERS = Counter("jobwire_webhook_dead_letters_total", "Deliveries written to webhooks.dead", ["reason"],
                       registry=None)
CONSUMER_LAG = Gauge("jobwire_consumer_lag_records", "Records not yet read, per topic (retry tiers: their backlog)",
                     ["topic"], registry=None)
DISPATCH_HELD = Gauge("jobwire_dispatch_held_deliveries",
                      "Deliveries in the dispatcher's memory (queued + in flight)", registry=None)
DISPATCH_HELD_BYTES = Gauge("jobwire_dispatch_held_bytes", "Bytes of deliveries in the dispatcher's memory",
                            registry=None)
ENDPOINT_QUEUE_DEPTH = Gauge("jobwire_endpoint_queue_depth",
                             "Deliveries queued for an endpoint (the deepest few endpoints only)", ["endpoint_id"],
                             registry=None)
ENDPOINT_OLDEST_AGE = Gauge("jobwire_endpoint_oldest_queued_seconds",
                            "Age of the oldest delivery queued for an endpoint (the deepest few only)",
                            ["endpoint_id"], registry=None)
PAUSED_PARTITIONS = Gauge("jobwire_paused_partitions", "Partitions a consumer holds back (flow control, not due)",
                          ["topic"], registry=None)
PARKED = Counter("jobwire_webhook_parked_total",
                 "Deliveries written to the retry path instead of held: their endpoint's queue was full",
                 registry=None)
HOPS = Counter("jobwire_webhook_hops_total", "Retry records moved onward unattempted", ["reason"], registry=None)
COPIES_DROPPED = Counter("jobwire_webhook_copies_dropped_total",
                         "Retry records skipped as copies of one already taken (a replay after a crash or "
                         "rebalance writes a record's next step again)", registry=None)
RESENDS_SPARED = Counter("jobwire_webhook_resends_spared_total",
                         "Deliveries read again after a crash and not sent: a receiver had taken them",
                         registry=None)
DEADLINE_TIMERS = Gauge("jobwire_deadline_timers", "Live jobs with a deadline timer in this dispatcher",
                        registry=None)
DEADLINES_FIRED = Counter("jobwire_deadlines_fired_total", "Expiries written (job.failed) by deadline", ["deadline"],
                          registry=None)

#: What the API serves at /metrics.
API_METRICS: tuple[MetricWrapperBase, ...] = (INVALID_RECORDS, UNDECODABLE_BATCHES, EVENTS_APPLIED, PROJECTION_JOBS, HTTP_LATENCY)
#: What the dispatcher serves on its metrics port.
DISPATCHER_METRICS: tuple[MetricWrapperBase, ...] = (
    INVALID_RECORDS, UNDECODABLE_BATCHES, DELIVERY_OUTCOMES, DELIVERY_LATENCY, DELIVERIES_IN_FLIGHT, DEAD_LETTERS, CONSUMER_LAG,
    DISPATCH_HELD, DISPATCH_HELD_BYTES, ENDPOINT_QUEUE_DEPTH, ENDPOINT_OLDEST_AGE, PAUSED_PARTITIONS, PARKED, HOPS,
    COPIES_DROPPED, RESENDS_SPARED, DEADLINE_TIMERS, DEADLINES_FIRED,
)


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry's figures and their content type, in the format the scraper asks for:
    OpenMetrics (with exemplars: the trace of an observation) when its Accept names it, the
    Prometheus text format otherwise."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


def registry_of(metrics: Iterable[MetricWrapperBase]) -> CollectorRegistry:
    """A registry of its own holding ``metrics``, and the process's memory, CPU and GC."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in metrics:
        registry.register(metric)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def scrape_refusal(token: str | None, dev: bool, authorization: str | None) -> str | None:
    """Why a scrape of /metrics is refused, or None when it is allowed. Metrics span every
    tenant: they need ``JOBWIRE_METRICS_TOKEN`` as a bearer token (a tenant's API key is not
    enough), and are open without one in dev mode only."""
    if token is None:
        return None if dev else "metrics need JOBWIRE_METRICS_TOKEN set on the server and sent as a bearer token"
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(presented.strip().encode(), token.encode()):
        return "metrics need the JOBWIRE_METRICS_TOKEN as a bearer token"
    return None
