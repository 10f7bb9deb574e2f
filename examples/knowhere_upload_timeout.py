"""Seed API 003 (Knowhere's parsing jobs) served by jobwire: a job waits in ``waiting-file``
for its file, and fails with an upload timeout when none comes.

The job is submitted with ``input: {upload: {...}}``: the API hands out an upload URL and the
headers to send with it, no worker starts the job until the file is PUT there
(``job.input_received``), and past the upload window (Knowhere's is one hour) the dispatcher
fails it with ``error.code: "expired"``; every subscriber gets a ``task.failed`` webhook. The
job is read as Knowhere's clients read it, from the Knowhere profile
(``/compat/knowhere/v1/jobs/{id}``).

Run it against a running stack (``make run``), with a short window to see the expiry:

    .venv/bin/python examples/knowhere_upload_timeout.py --api-key $KEY --upload-timeout-s 3
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp

from jobwire.sdk.client import Client


async def knowhere_job(api: str, api_key: str, job_id: str) -> dict[str, Any]:
    """The job as a Knowhere client sees it."""
    async with aiohttp.ClientSession() as http, http.get(
            f"{api}/compat/knowhere/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {api_key}"}) as answer:
        return dict(await answer.json())


async def upload_never_comes(api: str, api_key: str, upload_timeout_s: float) -> list[dict[str, Any]]:
    """Create a parsing job waiting for its file, upload nothing, and return what a Knowhere
    client saw: first ``waiting-file``, then ``failed`` once the window has passed."""
    async with Client(api, api_key) as client:
        task = await client.submit("parse", {"source_type": "file"}, input={"upload": {
            "content_type": "application/pdf", "filename": "report.pdf", "timeout_s": upload_timeout_s}})
        seen = [await knowhere_job(api, api_key, task["id"])]
        print(seen[-1], flush=True)
        await client.wait(task["id"], timeout_s=upload_timeout_s + 60)
        seen.append(await knowhere_job(api, api_key, task["id"]))
        print(seen[-1], flush=True)
        return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True, help="an API key, e.g. the one `make run` prints")
    parser.add_argument("--upload-timeout-s", type=float, default=3600.0, help="Knowhere's window is one hour")
    args = parser.parse_args()
    asyncio.run(upload_never_comes(args.api, args.api_key, args.upload_timeout_s))


if __name__ == "__main__":
    main()
