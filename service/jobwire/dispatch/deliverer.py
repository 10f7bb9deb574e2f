"""One attempt of one delivery, and its next step made durable (through the outbox).

The decision itself is the pure ``policy.decide``; this module gathers its inputs (the
endpoint as the registry knows it, the HTTP result) and carries out what it says: an attempt
record, a retry tier record, a dead letter, an endpoint snapshot.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from ssl import SSLContext
from typing import Protocol

import orjson

from jobwire import tracing
from jobwire.clock import SYSTEM, Clock, utc_now
from jobwire.dispatch.copies import Step
from jobwire.dispatch.outbox import MAX_RECORD_BYTES, Outbox
from jobwire.dispatch.policy import Decision, Outcome, SendResult, Tiers, decide
from jobwire.dispatch.received import Received
from jobwire.dispatch.signing import sign_headers
from jobwire.dispatch.tls_contexts import TlsContexts
from jobwire.errors import JobwireError
from jobwire.metrics import DEAD_LETTERS, DELIVERY_LATENCY, DELIVERY_OUTCOMES, RESENDS_SPARED
from jobwire.timeutil import format_utc, parse_utc
from jobwire.topics import Topics
from jobwire.webhooks import callbacks
from jobwire.webhooks.model import (
    FAILING_AFTER_ATTEMPTS,
    Attempt,
    Delivery,
    Endpoint,
    is_operational,
    operational_deliveries,
)
from jobwire.webhooks.registry import EndpointRegistry, Health, health_key
from jobwire.webhooks.request_options import client_cert_of, request_headers
from jobwire.webhooks.secretbox import SecretBox, binding

log = logging.getLogger(__name__)

#: Opened secrets kept (one per live endpoint secret; cleared whole when full).
OPENED_CACHE = 100_000


class Poster(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str], *, delivery_id: str = "",
                   ssl: SSLContext | None = None) -> SendResult: ...


class Deliverer:
    def __init__(self, *, schedule_s: Sequence[float], tiers: Tiers, disable_after_s: float, topics: Topics,
                 registry: EndpointRegistry, sender: Poster, box: SecretBox, outbox: Outbox,
                 received: Received | None = None, clock: Clock = SYSTEM, secret_keys: str = "") -> None:
        self.clock = clock
        self.received = received if received is not None else Received()
        self.schedule_s = tuple(schedule_s)
        self.tiers = tiers
        self.disable_after_s = disable_after_s
        self.topics = topics
        self.registry = registry
        self.sender = sender
        self.box = box
        self.outbox = outbox
        self._opened: dict[tuple[str, str], str] = {}
        self.tls = TlsContexts()
        #: endpoint id -> (its sealed request options, opened)
        self._options: dict[str, tuple[str, str]] = {}
        #: JOBWIRE_SECRET_KEY(S): what the tenants' callback secrets derive from.
        self._secret_keys = secret_keys

    # --- secrets ----------------------------------------------------------------------------

    def secrets_of(self, endpoint: Endpoint) -> list[str]:
        if callbacks.is_callback(endpoint.id):
            return callbacks.callback_secrets(self._secret_keys, endpoint.tenant)
        now = utc_now(self.clock)
        bound_to = binding(endpoint.tenant, endpoint.id)
        return [self._open(s.sealed, bound_to) for s in endpoint.secrets if s.expires_at is None or s.expires_at > now]

    def _options_of(self, endpoint: Endpoint) -> str | None:
        """The endpoint's opened request options, kept per endpoint (one entry each, replaced
        when they change: they may hold a certificate and key of some kilobytes)."""
        if endpoint.sealed_request is None:
            self._options.pop(endpoint.id, None)
            return None
        kept = self._options.get(endpoint.id)
        if kept is None or kept[0] != endpoint.sealed_request:
            kept = self._options[endpoint.id] = (endpoint.sealed_request, self.box.open(
                endpoint.sealed_request, bound_to=binding(endpoint.tenant, endpoint.id)))
        return kept[1]

    def _open(self, sealed: str, bound_to: str) -> str:
        # A sealed value has its own random nonce, so with its binding it names exactly one
        # secret: cache by both (a value copied to another endpoint must not open from the cache).
        secret = self._opened.get((sealed, bound_to))
        if secret is None:
            if len(self._opened) >= OPENED_CACHE:
                self._opened.clear()
            secret = self._opened[(sealed, bound_to)] = self.box.open(sealed, bound_to=bound_to)
        return secret

    # --- one attempt ------------------------------------------------------------------------

    async def attempt(self, delivery: Delivery, step: Step = Step(), *,
                      on_retry: Callable[[Delivery], None] | None = None) -> Outcome:
        """Attempt ``delivery`` and make its next step durable. ``on_retry``: a retry is kept
        by the caller (an ordered endpoint's queue) instead of written to a retry tier."""
        if self.received.already(delivery):
            # Read again after a crash (or a copy): its success is on record already.
            RESENDS_SPARED.inc()
            log.info("delivery taken already, not sent again delivery_id=%s endpoint_id=%s event_id=%s job_id=%s",
                     delivery.id, delivery.endpoint_id, delivery.event_id, delivery.job_id)
            return Outcome.SUCCEEDED
        endpoint = self._endpoint_of(delivery)
        if endpoint is None:
            await self.record(delivery, Outcome.DROPPED, error="the endpoint was deleted")
            return Outcome.DROPPED
        if endpoint.tenant != delivery.tenant:
            log.warning("delivery refused: tenant mismatch delivery_id=%s endpoint_id=%s event_id=%s",
                        delivery.id, delivery.endpoint_id, delivery.event_id)
            await self.bury(delivery, Outcome.FAILED, "tenant_mismatch",
                            error="the delivery's tenant does not own the endpoint")
            return Outcome.FAILED
        if endpoint.disabled:
            # Kept, not dropped: re-enabling the endpoint and calling recover delivers it.
            await self.bury(delivery, Outcome.SKIPPED, "endpoint_disabled",
                            error=f"endpoint disabled: {endpoint.disabled_reason or 'by the API'}")
            return Outcome.SKIPPED
        result = await self._send(endpoint, delivery)
        trace_id = tracing.trace_id_of(delivery.traceparent)
        # An exemplar links the latency to the job's trace (OpenMetrics scrapes show it).
        DELIVERY_LATENCY.observe(result.latency_ms / 1000, {"trace_id": trace_id} if trace_id else None)
        sent = replace(delivery, attempts=delivery.attempts + 1)
        now_ms = int(self.clock.time() * 1000)
        decision = decide(self.schedule_s, self.tiers, sent.attempts, result, now_ms=now_ms,
                          failing_since_ms=_ms(endpoint.failing_since), disable_after_s=self.disable_after_s)
        if not callbacks.is_callback(endpoint.id):  # a job's callback has no endpoint record to keep
            await self._track_health(endpoint, decision, now_ms)
        await self._carry_out(sent, decision, result, step, on_retry)
        return decision.outcome

    def _endpoint_of(self, delivery: Delivery) -> Endpoint | None:
        """The endpoint a delivery goes to: a registered one, or a job's callback (its URL in the
        delivery, signed with the tenant's callback secret)."""
        if callbacks.is_callback(delivery.endpoint_id) and delivery.url is not None:
            return Endpoint(delivery.endpoint_id, delivery.tenant, delivery.url, delivery.created_at,
                            delivery.created_at, ())
        return self.registry.endpoints.get(delivery.endpoint_id)

    async def _send(self, endpoint: Endpoint, delivery: Delivery) -> SendResult:
        try:
            secrets = self.secrets_of(endpoint)
            options = self._options_of(endpoint)
            extra = request_headers(options)
            context = self.tls.context_for(client_cert_of(options), endpoint.tls_ca)
        except (JobwireError, ssl.SSLError, ValueError) as exc:
            log.error("endpoint secrets unopenable delivery_id=%s endpoint_id=%s: %s", delivery.id, endpoint.id, exc)
            return SendResult(None, 0.0, "the endpoint's signing secret or request options cannot be opened or "
                                         "used; rotate the endpoint's secret and set its headers, auth and "
                                         "TLS options again")
        attempt = tracing.start(f"webhook {delivery.event_type}", kind=tracing.CLIENT, parent=delivery.traceparent,
                                attributes={"jobwire.delivery.id": delivery.id, "jobwire.endpoint.id": endpoint.id,
                                            "jobwire.job.id": delivery.job_id, "jobwire.event.id": delivery.event_id,
                                            "jobwire.attempt": delivery.previous_attempts + delivery.attempts + 1})
        result = None
        try:
            headers = sign_headers(delivery.id, delivery.body, secrets,
                                   at=datetime.fromtimestamp(self.clock.time(), UTC))
            # The receiver may continue the trace; the signature's headers last: whatever an
            # endpoint sets, they are the ones sent.
            sent = {**extra, **tracing.request_headers(attempt, delivery.traceparent), **headers}
            if context is None:
                result = await self.sender.post(endpoint.url, delivery.body, sent, delivery_id=delivery.id)
            else:
                result = await self.sender.post(endpoint.url, delivery.body, sent, delivery_id=delivery.id,
                                                ssl=context)
            return result
        finally:
            if attempt is not None:
                _end_attempt(attempt, result)

    async def _carry_out(self, sent: Delivery, decision: Decision, result: SendResult, step: Step,
                         on_retry: Callable[[Delivery], None] | None) -> None:
        outcome = decision.outcome
        if outcome is Outcome.SUCCEEDED:
            self.received.note(sent.id, sent.previous_attempts + sent.attempts)
            await self.record(sent, outcome, result)
            if sent.attempts > FAILING_AFTER_ATTEMPTS:
                await self._about_delivery("delivery.recovered", sent, result)
        elif outcome is Outcome.RETRYING:
            retry = replace(sent, due_at_ms=decision.due_at_ms, not_before_ms=decision.not_before_ms)
            if on_retry is not None:
                on_retry(retry)
            else:
                await self.outbox.send(tier_topic(self.topics, decision.tier_s), sent.endpoint_id, retry.encode(),
                                       headers=[*step.attempted().headers(), *tracing.record_headers(retry.traceparent)])
            await self.record(sent, outcome, result, next_at=format_utc(datetime.fromtimestamp(
                max(decision.due_at_ms, decision.not_before_ms) / 1000, UTC)))
            if sent.attempts == FAILING_AFTER_ATTEMPTS:
                await self._about_delivery("delivery.failing", sent, result)
        elif outcome is Outcome.DISABLED:
            gone = result.status_code == 410
            await self.bury(sent, outcome, "endpoint_gone" if gone else "endpoint_failing", result,
                            extra={"reason": decision.reason or ""})
        else:
            await self.bury(sent, Outcome.FAILED, "attempts_exhausted", result)
            await self._about_delivery("delivery.exhausted", sent, result)

    async def _track_health(self, endpoint: Endpoint, decision: Decision, now_ms: int) -> None:
        """Persist when the endpoint started failing (so auto-disable survives restarts), when
        it recovered, and that it is disabled: snapshots on the compacted endpoints topic."""
        changes: dict[str, object] = {}
        if decision.outcome is Outcome.SUCCEEDED:
            if endpoint.failing_since is not None:
                changes["failing_since"] = None
        elif decision.outcome is Outcome.DISABLED:
            changes.update(disabled=True, disabled_reason=decision.reason, failing_since=None)
            log.warning("endpoint disabled endpoint_id=%s reason=%s", endpoint.id, decision.reason)
        elif endpoint.failing_since is None:
            changes["failing_since"] = format_utc(datetime.fromtimestamp(now_ms / 1000, UTC))
        if changes and self.registry.endpoints.get(endpoint.id) is endpoint:
            # Its own record (``Health``), never the API's snapshot: a rotation, a new URL or a
            # delete the dispatcher has not read yet cannot be overwritten.
            changed = endpoint.with_changes(**changes, updated_at=utc_now(self.clock))
            health = Health(endpoint.id, changed.updated_at, changed.failing_since, changed.disabled,
                            changed.disabled_reason, seen=self.registry.snapshot_offset(endpoint.id))
            # Our own copy at once: the next attempt must not write the same change again.
            self.registry.note_health(health)
            await self.outbox.send(self.topics.endpoints, health_key(endpoint.id), health.encode())
            if changed.disabled and not endpoint.disabled:
                await self._operational("endpoint.disabled", changed, {
                    "endpoint_id": changed.id, "url": changed.url, "reason": changed.disabled_reason,
                    "disabled_at": changed.updated_at}, occurrence=changed.updated_at)

    # --- operational events -----------------------------------------------------------------

    async def _about_delivery(self, event_type: str, sent: Delivery, result: SendResult) -> None:
        if is_operational(sent.event_type):
            return  # never about operational deliveries themselves: a failing endpoint would feed itself
        endpoint = self.registry.endpoints.get(sent.endpoint_id)
        if endpoint is None:
            return
        await self._operational(event_type, endpoint, {
            "delivery_id": sent.id, "endpoint_id": sent.endpoint_id, "event_type": sent.event_type,
            "event_id": sent.event_id, "job_id": sent.job_id, "attempts": sent.previous_attempts + sent.attempts,
            "last_attempt": {"at": utc_now(self.clock), "status_code": result.status_code, "error": result.error},
        }, occurrence=f"{sent.id}\0{sent.previous_attempts}")

    async def _operational(self, event_type: str, about: Endpoint, data: dict[str, object], *,
                           occurrence: str) -> None:
        """Raise an operational event: a delivery to each of the tenant's endpoints that asked
        for it, on the requests topic like any delivery the dispatcher did not start itself."""
        for delivery in operational_deliveries(self.registry.endpoints.values(), about.tenant, event_type, data,
                                               about=about.id, occurrence=occurrence, at=utc_now(self.clock)):
            await self.outbox.send(self.topics.requests, delivery.endpoint_id, delivery.encode())
        log.info("operational event event_type=%s endpoint_id=%s", event_type, about.id)

    # --- records ----------------------------------------------------------------------------

    async def bury(self, delivery: Delivery, outcome: Outcome, reason: str, result: SendResult | None = None, *,
                   error: str | None = None, extra: dict[str, str] | None = None) -> None:
        """End a delivery unsent: a dead letter, counted, and the attempt record that carries it
        (so retry and recover can send it again)."""
        await self.outbox.send(self.topics.dead, delivery.id, delivery.encode())
        DEAD_LETTERS.labels(reason=reason).inc()
        await self.record(delivery, outcome, result, error=error, extra=extra, dead_letter=True)

    async def record(self, delivery: Delivery, outcome: Outcome, result: SendResult | None = None, *,
                     error: str | None = None, next_at: str | None = None, extra: dict[str, str] | None = None,
                     dead_letter: bool = False) -> None:
        trace_id = tracing.trace_id_of(delivery.traceparent)
        if trace_id is not None:  # for the delivery log and the portal: the job's trace
            extra = {**(extra or {}), "trace_id": trace_id}
        attempt = Attempt(
            delivery.id, delivery.endpoint_id, delivery.tenant, delivery.event_type, delivery.event_id, delivery.job_id,
            delivery.previous_attempts + delivery.attempts, utc_now(self.clock), outcome.value,
            result.status_code if result else None, result.latency_ms if result else None,
            (result.error if result else None) or error, result.excerpt if result else None, next_at, extra or {},
            delivery.to_dict() if dead_letter else None,
            # The payload once per delivery, with its first attempt, for the delivery log.
            {"body": orjson.Fragment(delivery.body)} if delivery.previous_attempts + delivery.attempts == 1 else None,
        )
        encoded = attempt.encode()
        if len(encoded) > MAX_RECORD_BYTES:  # a body near the limit plus a long excerpt: keep the record
            encoded = replace(attempt, response_excerpt=None, request=None).encode()
        await self.outbox.send(self.topics.attempts, delivery.id, encoded)
        DELIVERY_OUTCOMES.labels(outcome=outcome.value).inc()
        log.info("delivery attempt delivery_id=%s endpoint_id=%s event_id=%s job_id=%s attempt=%d outcome=%s "
                 "status=%s latency_ms=%s error=%s", delivery.id, delivery.endpoint_id, delivery.event_id,
                 delivery.job_id, attempt.attempt, outcome.value, attempt.status_code, attempt.latency_ms,
                 attempt.error)

    async def park(self, delivery: Delivery, step: Step) -> None:
        """Its endpoint's queue is full: the delivery waits on the retry path, due at once.
        ``step``: that of the record it came from (``copies``)."""
        await self.outbox.send(self.topics.requests, delivery.endpoint_id, replace(delivery, due_at_ms=0).encode(),
                               headers=[*step.moved().headers(), *tracing.record_headers(delivery.traceparent)])


def tier_topic(topics: Topics, tier_s: float) -> str:
    """The topic of a tier: the requests topic is the tier of delay 0."""
    return topics.requests if tier_s == 0 else topics.retry(tier_s)


def _ms(moment: str | None) -> int | None:
    if moment is None:
        return None
    try:
        return int(parse_utc(moment).timestamp() * 1000)
    except ValueError:
        return None


def _end_attempt(attempt: object, result: SendResult | None) -> None:
    """End an attempt's span with its HTTP status; an error unless a 2xx answered."""
    if result is None:  # canceled or raised under way
        tracing.end(attempt, error="the attempt did not finish")
    elif result.status_code is not None and 200 <= result.status_code < 300:
        tracing.end(attempt, http__response__status_code=result.status_code)
    else:
        tracing.end(attempt, error=result.error or f"HTTP {result.status_code}",
                    error__type=str(result.status_code) if result.status_code else "transport",
                    http__response__status_code=result.status_code)
