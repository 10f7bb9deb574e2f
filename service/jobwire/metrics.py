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
