"""Seed 003's Python sample (Knowhere, "Handling States in Code"), copied as printed; the seed
leaves ``get_job`` to the reader, so it is the plain HTTP call its docs describe
(``GET /v1/jobs/{job_id}``) against ``BASE_URL``, the Knowhere profile under test."""
# ruff: noqa
# mypy: ignore-errors
import os

import requests

BASE_URL = os.environ["SEED_BASE_URL"]
API_KEY = os.environ["SEED_API_KEY"]


def get_job(job_id):
    return requests.get(f"{BASE_URL}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {API_KEY}"}).json()


def wait_for_job(job_id: str, timeout: int = 300) -> dict:
    """Wait for a job to complete, handling all states."""
    import time
    start_time = time.time()
    poll_interval = 2
    while time.time() - start_time < timeout:
        job = get_job(job_id)
        status = job["status"]
        if status == "done":
            return job
        elif status == "failed":
            raise Exception(f"Job failed: {job['error']['message']}")
        elif status == "waiting-file":
            raise Exception("File not uploaded. Upload file first.")
        elif status in ["pending", "converting", "running"]:
            # Show progress if available
            if "progress" in job:
                p = job["progress"]
                print(f"Progress: {p['processed_pages']}/{p['total_pages']} pages")
            time.sleep(poll_interval)
            poll_interval = min(poll_interval + 1, 10) # Backoff
        else:
            raise Exception(f"Unknown status: {status}")
    raise TimeoutError(f"Job did not complete within {timeout} seconds")
