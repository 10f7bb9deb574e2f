"""OpenTelemetry traces: one trace per job, from the submitting request through Kafka, the
worker and the dispatcher to the receiver of its webhook.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or
``JOBWIRE_TRACING=1`` is set; off, every call here returns at its first line and nothing of
OpenTelemetry is imported. On, the official SDK does the work: a batch span processor, an
OTLP/HTTP exporter, and the standard ``OTEL_*`` variables (service name, resource attributes,
sampler, exporter endpoint, headers and timeouts, batch sizes; ``OTEL_SDK_DISABLED``).

The context travels as W3C trace context: ``traceparent``/``tracestate`` headers on the Kafka
records jobwire writes (the CloudEvents distributed-tracing extension's attributes; a binary
mode ``ce_traceparent`` from another producer is read too), in the delivery records that carry a
webhook through its retries, and on every webhook request, so a receiver can continue it.
Span attributes name jobs, events, deliveries and endpoints, never a secret or a payload.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from jobwire.errors import ConfigError

log = logging.getLogger(__name__)

#: Span kinds, by name (``opentelemetry.trace.SpanKind`` once tracing is on).
SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL = "server", "client", "producer", "consumer", "internal"
#: Kafka header names read for a record's trace context, first found wins.
CONTEXT_HEADERS = ("traceparent", "ce_traceparent")
#: A W3C traceparent as jobwire accepts one from outside (a request, a record): anything else
#: is ignored, never an error, and never stored.
#: Version ff and all-zero ids are invalid (W3C trace context), as the propagator has them.
TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_propagator: Any = None
_provider: Any = None
_api: Any = None  # the opentelemetry.trace module, bound once tracing is on
_kinds: dict[str, Any] = {}  # our kind names -> SpanKind, once tracing is on
_root: Any = None  # an empty context: what a span without a parent starts from
#: Whether the sampler follows a parent's decision (the ``parentbased_*`` samplers, the
#: default): then a span under an unsampled parent is not made at all, not made and dropped.
_follows_parent = True
#: The samplers that follow a remote parent's decision (OTEL_TRACES_SAMPLER; unset is the first).
PARENT_BASED = ("", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio")
#: While tracing is off here: the trace context of the record being handled, passed on
#: unchanged in what is published for it, so the trace stays whole across a process that does
#: not trace (a worker run by an application of its own).
_carried: contextvars.ContextVar[str | None] = contextvars.ContextVar("jobwire_carried_trace", default=None)


class _NoSpan:
    """What ``span`` gives while tracing is off: enters and leaves, costs one call."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the settings ask for tracing; ``ConfigError`` for a JOBWIRE_TRACING it cannot read."""
    switch = env.get("JOBWIRE_TRACING", "").strip().lower()
    if switch not in ("", "0", "1", "false", "true", "off", "on"):
        raise ConfigError("JOBWIRE_TRACING", "1/true/on or 0/false/off")
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or switch in ("0", "false", "off"):
        return False
    return switch in ("1", "true", "on") or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                                 or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(service_name: str, env: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on for this process when its settings ask for it; returns whether it is on.
    ``service_name`` applies unless ``OTEL_SERVICE_NAME`` names the service."""
    if _tracer is not None:
        return True  # once per process (an application may start several workers)
    if not wanted(env):
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter == "none":
        return False
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if exporter != "otlp" or protocol != "http/protobuf":
        raise ConfigError("OTEL_TRACES_EXPORTER", "jobwire exports traces over OTLP/HTTP (http/protobuf) only; "
                                                  f"got exporter {exporter!r}, protocol {protocol!r}")
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        if env.get("JOBWIRE_TRACING", "").strip().lower() in ("1", "true", "on"):
            raise ConfigError("JOBWIRE_TRACING", "tracing is asked for but OpenTelemetry is not installed: "
                                                 "pip install 'jobwire[tracing]'") from exc
        # An endpoint a platform sets for every process is no reason to refuse to start.
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: tracing off "
                    "(pip install 'jobwire[tracing]')")
        return False
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself; ours is the default.
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)  # refused (with a warning) when the application set one
    install(provider, env)
    log.info("tracing on service=%s endpoint=%s", resource.attributes.get("service.name"),
             env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "default")
    return True


def install(provider: Any, env: Mapping[str, str] = os.environ) -> None:
    """Trace through ``provider`` (an SDK TracerProvider) from now on; ``configure`` makes it
    from the settings, a test passes one exporting to memory."""
    global _tracer, _propagator, _provider, _api, _kinds, _root, _follows_parent
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _provider = provider
    _tracer = provider.get_tracer("jobwire")
    _propagator = TraceContextTextMapPropagator()
    _api = trace
    _kinds = {kind: trace.SpanKind[kind.upper()] for kind in (SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL)}
    _root = context.Context()
    _follows_parent = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() in PARENT_BASED


def enabled() -> bool:
    return _tracer is not None


#: Longest a process's exit waits to export what it buffered.
SHUTDOWN_FLUSH_MS = 5000


def shutdown() -> None:
    """Export what is buffered (at most ``SHUTDOWN_FLUSH_MS``) and stop."""
    global _tracer, _provider
    if _provider is not None:
        _provider.force_flush(SHUTDOWN_FLUSH_MS)
        _provider.shutdown()
    _tracer = _provider = None


def span(name: str, *, kind: str = INTERNAL, parent: str | None = None, link: str | None = None,
         attributes: Mapping[str, Any] | None = None) -> Any:
    """A span as a context manager, made current inside it. ``parent``: a ``traceparent`` to
    continue (a record's, a delivery's); None continues the current span, if any. ``link``:
    another trace this span relates to (the request that canceled a job, say)."""
    if _tracer is None:
        return NO_SPAN
    return _tracer.start_as_current_span(name, context=_remote(parent) if parent else None, kind=_kinds[kind],
                                         links=_links(parent, link),
                                         attributes={k: v for k, v in (attributes or {}).items() if v is not None})


# --- spans on the dispatcher's path: started and ended by hand, never made current -------------
# The dispatcher makes two spans for every webhook it sends; the context-manager layers, the
# context attach and detach and the propagator's parsing were a third of what tracing cost it.


def _span_context(traceparent: str) -> Any:
    """The remote span context a well-formed ``traceparent`` names (as the propagator makes it)."""
    return _api.SpanContext(int(traceparent[3:35], 16), int(traceparent[36:52], 16), is_remote=True,
                            trace_flags=_api.TraceFlags(int(traceparent[53:55], 16)))


def _remote(parent: str) -> Any:
    """A context whose span is the remote parent a well-formed ``traceparent`` names."""
    return _api.set_span_in_context(_api.NonRecordingSpan(_span_context(parent)))


def _links(parent: str | None, link: str | None) -> list[Any] | None:
    """A link to ``link``'s span, unless it is the parent itself or names no valid span."""
    if link is None or link == parent:
        return None
    linked = _span_context(link)
    return [_api.Link(linked)] if linked.is_valid else None


def start(name: str, *, kind: str = INTERNAL, parent: str | None = None, link: str | None = None,
          attributes: Mapping[str, Any] | None = None, start_ns: int | None = None) -> Any:
    """A span, started, not made current: end it with ``end``. None while tracing is off, and
    under an unsampled ``parent`` when the sampler follows the parent (nothing would be
    exported): then ``traceparent(None, parent)`` passes the parent's context on."""
    if _tracer is None or (parent is not None and _follows_parent and not int(parent[53:55], 16) & 1):
        return None
    return _tracer.start_span(name, context=_remote(parent) if parent else _root, kind=_kinds[kind],
                              links=_links(parent, link), start_time=start_ns,
                              attributes={k: v for k, v in (attributes or {}).items() if v is not None})


def traceparent(span: Any, fallback: str | None = None) -> str | None:
    """The ``traceparent`` of a span from ``start``; ``fallback`` (the context passed on) for None."""
    if span is None:
        return fallback
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def request_headers(span: Any, fallback: str | None = None) -> dict[str, str]:
    """An outgoing request's ``traceparent``: a span's from ``start``, or ``fallback`` passed on
    (a span not made under an unsampled parent). Nothing while tracing is off."""
    if _tracer is None:
        return {}
    passed = traceparent(span, fallback)
    return {"traceparent": passed} if passed else {}


def end(span: Any, *, error: str | None = None, **attributes: Any) -> None:
    """End a span from ``start`` (None is fine), with attributes (``__`` for ``.``) and, for a
    failure, an error status."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key.replace("__", "."), value)
    if error is not None:
        span.set_status(_api.Status(_api.StatusCode.ERROR, error))
    span.end()


class Deferred:
    """A span started only when something asks for its context (a record that makes a webhook
    does; most records make none, and cost no span), timed from when it was made. While tracing
    is off, its context is ``parent``, passed on."""

    __slots__ = ("_args", "_start_ns", "_span", "_started")

    def __init__(self, name: str, *, kind: str = INTERNAL, parent: str | None = None, link: str | None = None,
                 attributes: Mapping[str, Any] | None = None) -> None:
        self._args: tuple[Any, ...] = (name, kind, parent, link, attributes)
        self._start_ns = time.time_ns() if _tracer is not None else 0
        self._span: Any = None
        self._started = False

    def traceparent(self) -> str | None:
        name, kind, parent, link, attributes = self._args
        if not self._started and _tracer is not None:
            self._started = True
            self._span = start(name, kind=kind, parent=parent, link=link, attributes=attributes,
                               start_ns=self._start_ns)
        return traceparent(self._span, parent)

    def end(self) -> None:
        end(self._span)


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (an HTTP status, an outcome)."""
    if _tracer is None:
        return
    current = _api.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key.replace("__", "."), value)


def rename(name: str) -> None:
    """Name the current span once its name is known (an HTTP route after routing)."""
    if _tracer is None:
        return
    _api.get_current_span().update_name(name)


def exemplar() -> dict[str, str] | None:
    """The current trace as a Prometheus exemplar (None while tracing is off or no span is on)."""
    if _tracer is None:
        return None
    context = _api.get_current_span().get_span_context()
    # Only a sampled trace is exported: an exemplar must not point at one that was not.
    return {"trace_id": format(context.trace_id, "032x")} if context.is_valid and context.trace_flags.sampled \
        else None


def http_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, for an outgoing request."""
    if _tracer is None:
        return {}
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def kafka_headers() -> list[tuple[str, bytes]]:
    """The current span's context as Kafka record headers (while tracing is off: the context
    of the record being handled, passed on)."""
    if _tracer is None:
        carried = _carried.get()
        return [("traceparent", carried.encode())] if carried else []
    return [(name, value.encode()) for name, value in http_headers().items()]


def record_headers(traceparent: str | None) -> list[tuple[str, bytes]]:
    """A delivery's trace context as headers of the retry or request record that carries it
    (headers, not fields: a dispatcher of an earlier version reads the record unchanged)."""
    return [("traceparent", traceparent.encode())] if traceparent else []


def carry(traceparent: str | None) -> None:
    """While tracing is off: pass ``traceparent`` on in what this task publishes from now on."""
    if _tracer is None:
        _carried.set(traceparent)


def traceparent_of(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """A Kafka record's well-formed ``traceparent`` header (or a binary-mode CloudEvent's), if any."""
    if not headers:
        return None
    found = {name: value for name, value in headers if name in CONTEXT_HEADERS}
    for name in CONTEXT_HEADERS:
        value = found.get(name)
        if isinstance(value, bytes) and len(value) == 55:
            text = value.decode("ascii", "replace")
            return text if TRACEPARENT.fullmatch(text) else None
    return None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id a ``traceparent`` names, if it was sampled (so a backend has it)."""
    if not traceparent or not TRACEPARENT.fullmatch(traceparent):
        return None
    return traceparent[3:35] if int(traceparent[53:55], 16) & 1 else None
