"""Seed API 003 (Knowhere's parsing jobs) served by jobwire: a job waits for its file upload
and fails with an upload timeout when none comes, as Knowhere's ``waiting-file`` state does.

jobwire has no ``waiting-file`` status: the job is ``pending`` with the upload URL in its
``metadata``, and its ``pending_timeout_s`` is the upload window (Knowhere's is one hour). The
worker that sees the upload starts the job; if nothing starts it in time, the dispatcher fails
it with ``error.code: "expired"`` and every subscriber gets a ``task.failed`` webhook.

Run it against a running stack (``make run``), with a short window to see the expiry:

    .venv/bin/python examples/knowhere_upload_timeout.py --api-key $KEY --upload-timeout-s 3
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from jobwire.sdk.client import Client


def knowhere_view(task: dict[str, Any]) -> dict[str, Any]:
    """A jobwire task object in the shape of Knowhere's job (seed 003)."""
    view: dict[str, Any] = {"job_id": task["id"], "created_at": task["created_at"]}
    status = task["status"]
    if status == "pending":
        waiting = (task["metadata"] or {}).get("upload_url") is not None
        view["status"] = "waiting-file" if waiting else "pending"
        if waiting:
            view["upload_url"] = task["metadata"]["upload_url"]
            view["expires_at"] = task["pending_deadline_at"]
    elif status == "processing":
        view["status"] = task["stage"] or "running"  # converting | running
        if task["progress"]["total"] is not None:
            view["progress"] = {"total_pages": task["progress"]["total"],
                                "processed_pages": task["progress"]["processed"]}
    elif status == "completed":
        view.update(status="done", completed_at=task["finished_at"], result_url=task["result_url"],
                    result_url_expires_at=task["result_url_expires_at"], result_checksum=task["result_checksum"])
    else:  # failed, canceled
        view.update(status="failed", failed_at=task["finished_at"],
                    error={"code": (task["error"] or {}).get("code", status),
                           "message": (task["error"] or {}).get("message", task["status"])})
    return view


async def upload_never_comes(api: str, api_key: str, upload_timeout_s: float) -> list[dict[str, Any]]:
    """Create a parsing job waiting for its file, upload nothing, and return what a Knowhere
    client saw: first ``waiting-file``, then ``failed`` once the window has passed."""
    async with Client(api, api_key) as client:
        task = await client.submit(
            "parse", {"source_type": "file", "file_name": "report.pdf"},
            metadata={"upload_url": "https://storage.example/uploads/report.pdf",
                      "upload_headers": {"Content-Type": "application/pdf"}},
            pending_timeout_s=upload_timeout_s)
        seen = [knowhere_view(task)]
        print(seen[-1], flush=True)
        seen.append(knowhere_view(await client.wait(task["id"], timeout_s=upload_timeout_s + 60)))
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
