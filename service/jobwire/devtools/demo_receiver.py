"""A webhook receiver for `make run` and demos: it registers itself with the API, verifies
every request with the svix library, as a customer's server would, and prints what arrived."""

from __future__ import annotations

import asyncio
import errno
import sys

from aiohttp import web
from svix.webhooks import Webhook, WebhookVerificationError

from jobwire.sdk.client import Client


class DemoReceiver:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.verified = 0
        self.rejected = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if self.secret is None:
            return web.Response(status=503, text="not registered yet")
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            self.rejected += 1
            print(f"webhook REJECTED: {exc} (webhook-id {headers.get('webhook-id')})", flush=True)
            return web.Response(status=400, text="signature did not verify")
        import orjson

        document = orjson.loads(body)
        data = document.get("data", {})
        self.verified += 1
        print(f"webhook verified: {document['type']} {data.get('id', '')} status={data.get('status', '-')} "
              f"(webhook-id {headers['webhook-id']})", flush=True)
        return web.Response(status=204)


async def serve(api_url: str, api_key: str, host: str, port: int) -> None:
    receiver = DemoReceiver()
    app = web.Application()
    app.router.add_post("/webhooks", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        if port == 0 or error.errno != errno.EADDRINUSE:
            raise
        # The port next to the API's is a convenience, not a contract: the receiver registers
        # whatever URL it ends up on, so a taken port must not stop the dev stack.
        print(f"demo receiver: port {port} is taken; using a free one", file=sys.stderr, flush=True)
        await web.TCPSite(runner, host, 0).start()
    bound_port = runner.addresses[0][1]
    url = f"http://{host}:{bound_port}/webhooks"
    async with Client(api_url, api_key) as client:
        endpoint = await client.create_endpoint(url, description="jobwire dev demo receiver")
        receiver.secret = endpoint["secret"]
        print(f"demo receiver listening on {url} as endpoint {endpoint['id']}", file=sys.stderr, flush=True)
        # A first signed webhook right away, so the whole path shows before any job runs.
        await client.send_test(endpoint["id"])
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
