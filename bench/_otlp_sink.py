"""An OTLP/HTTP trace sink for the tracing benchmarks: takes every export and answers 200,
reading the body and nothing more. Run as a process of its own: ``python _otlp_sink.py PORT``."""

import sys

from aiohttp import web


async def traces(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")


#: The path of this script, for the benchmarks to start it.
SCRIPT = __file__

if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
