"""Real servers on loopback for integration tests: the API under uvicorn, workers as tasks."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from aiohttp import web

from jobwire.api.app import create_app
from jobwire.api.server import server_config
from jobwire.config import Settings
from jobwire.devtools.broker import free_port
from jobwire.sdk.worker import Handler, Worker


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[str]:
    """An API replica on a free loopback port; yields its base URL once it is ready."""
    port = free_port()
    server = uvicorn.Server(server_config(create_app(settings), settings, "127.0.0.1", port))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()  # raises what went wrong
                    raise RuntimeError("uvicorn exited during start-up")
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def serving(app: web.Application, **runner_options: Any) -> AsyncIterator[int]:
    """An aiohttp app on a free loopback port; yields the port, and cleans the runner up after."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, operation: str, handler: Handler, **options: object) -> AsyncIterator[Worker]:
    worker = Worker(settings, operation, handler, **options)  # type: ignore[arg-type]
    stop = asyncio.Event()
    await worker.start()
    task = asyncio.create_task(worker.run(stop=stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await worker.stop()


@contextlib.contextmanager
def api_in_thread(settings: Settings) -> Iterator[str]:
    """The API on its own thread and event loop, for synchronous tests (schemathesis)."""
    port = free_port()
    server = uvicorn.Server(server_config(create_app(settings), settings, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
