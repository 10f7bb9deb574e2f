"""Prometheus metrics shared by every process; each process exposes its own registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INVALID_RECORDS = Counter(
    "jobwire_invalid_records_total", "Records that were not valid events, set aside and skipped", ["topic"]
)
EVENTS_APPLIED = Counter(
    "jobwire_projection_events_total", "Events folded into the projection, by verdict", ["verdict"]
)
PROJECTION_JOBS = Gauge("jobwire_projection_jobs", "Jobs held in the projection")
HTTP_LATENCY = Histogram(
    "jobwire_http_request_seconds", "API request latency", ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_OUTCOMES = Counter("jobwire_webhook_attempts_total", "Delivery attempts by outcome", ["outcome"])
DELIVERY_LATENCY = Histogram(
    "jobwire_webhook_attempt_seconds", "Latency of delivery attempts",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
DELIVERIES_IN_FLIGHT = Gauge("jobwire_webhook_in_flight", "Delivery attempts in flight")
DEAD_LETTERS = Counter("jobwire_webhook_dead_letters_total", "Deliveries written to webhooks.dead", ["reason"])
CONSUMER_LAG = Gauge("jobwire_consumer_lag_records", "Records not yet read, per topic (retry tiers: their backlog)",
                     ["topic"])
DISPATCH_HELD = Gauge("jobwire_dispatch_held_deliveries", "Deliveries in the dispatcher's memory (queued + in flight)")
DISPATCH_HELD_BYTES = Gauge("jobwire_dispatch_held_bytes", "Bytes of deliveries in the dispatcher's memory")
ENDPOINT_QUEUE_DEPTH = Gauge("jobwire_endpoint_queue_depth",
                             "Deliveries queued for an endpoint (the deepest few endpoints only)", ["endpoint_id"])
ENDPOINT_OLDEST_AGE = Gauge("jobwire_endpoint_oldest_queued_seconds",
                            "Age of the oldest delivery queued for an endpoint (the deepest few only)", ["endpoint_id"])
PAUSED_PARTITIONS = Gauge("jobwire_paused_partitions", "Partitions a consumer holds back (flow control, not due)",
                          ["topic"])
PARKED = Counter("jobwire_webhook_parked_total",
                 "Deliveries written to the retry path instead of held: their endpoint's queue was full")
HOPS = Counter("jobwire_webhook_hops_total", "Retry records moved onward unattempted", ["reason"])
DEADLINE_TIMERS = Gauge("jobwire_deadline_timers", "Live jobs with a deadline timer in this dispatcher")
DEADLINES_FIRED = Counter("jobwire_deadlines_fired_total", "Expiries written (job.failed) by deadline", ["deadline"])
