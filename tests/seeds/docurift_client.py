"""Seed 001's sample client (DocuRift, "Example: Polling for Status"), copied as printed; only
the base URL changed (``BASE_URL``, the DocuRift profile of the jobwire under test)."""
# ruff: noqa
# mypy: ignore-errors
import os

BASE_URL = os.environ["SEED_BASE_URL"]

import time
import requests
def wait_for_completion(job_id, api_key, max_wait=60):
    """Poll until job completes or timeout."""
    start = time.time()
    while time.time() - start < max_wait:
        response = requests.get(
            f"{BASE_URL}/v1/jobs/{job_id}",
            headers={"X-API-Key": api_key}
        )
        status = response.json()["data"]["status"]
        if status == "completed":
            return response.json()["data"]
        elif status == "failed":
            raise Exception("Job failed")
        time.sleep(2) # Poll every 2 seconds
    raise TimeoutError("Job did not complete in time")
