"""What one span costs the dispatcher in CPU: the OpenTelemetry SDK's start and end as jobwire
makes its attempt spans (jobwire/tracing.py), and the OTLP exporter's encoding, each alone, and
then everything together at a steady 2,500 spans/s exporting to an OTLP/HTTP sink on loopback
(the batch span processor's thread included). No broker.

    .venv/bin/python bench/span_cost.py [--spans 20000]

Each figure is CPU time per span; the ceiling is the same loop with tracing off.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import _otlp_sink as otlp_sink

from jobwire import tracing
from jobwire.devtools.broker import free_port

PARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
def attempts(count: int, pace_per_s: float | None = None) -> float:
    """CPU seconds per span for ``count`` attempt spans made as the deliverer makes them."""
    started = time.process_time()
    for n in range(count):
        span = tracing.start("webhook task.completed", kind=tracing.CLIENT, parent=PARENT,
                             attributes={"jobwire.delivery.id": f"msg_{n}", "jobwire.endpoint.id": "ep_1",
                                         "jobwire.job.id": f"job_{n}", "jobwire.event.id": f"evt_{n}",
                                         "jobwire.attempt": 1})
        tracing.request_headers(span, PARENT)
        tracing.end(span, http__response__status_code=200)
        if pace_per_s and n % 50 == 49:
            time.sleep(50 / pace_per_s)
    return (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=20_000)
    args = parser.parse_args()
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    off = attempts(args.spans)
    kept: list[ReadableSpan] = []

    class Keep(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            kept.extend(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    tracing.install(provider, {})
    made = attempts(args.spans)
    tracing.shutdown()
    started = time.process_time()
    for first in range(0, len(kept), 512):  # the batch processor's default batch
        encode_spans(kept[first:first + 512]).SerializePartialToString()
    encoded = (time.process_time() - started) / len(kept)

    port = free_port()
    sink = subprocess.Popen([sys.executable, otlp_sink.SCRIPT, str(port)])
    try:
        time.sleep(1.5)
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"  # the exporter reads it there
        tracing.configure("bench")
        started = time.process_time()
        attempts(args.spans, pace_per_s=2500)
        tracing.shutdown()  # exports what is left: its CPU is the span's too
        whole = (time.process_time() - started) / args.spans
    finally:
        sink.terminate()
        sink.wait()
    print(f"tracing off: {off * 1e6:.1f} us a call site (the ceiling)")
    print(f"span start + end (SDK, hand-made as jobwire makes them): {made * 1e6:.1f} us a span")
    print(f"OTLP protobuf encoding: {encoded * 1e6:.1f} us a span")
    print(f"everything, batch span processor exporting to a sink at 2,500 spans/s: {whole * 1e6:.1f} us a span "
          f"({whole / off:,.0f} x off)")


if __name__ == "__main__":
    main()
