"""Seed 000 (Syncfusion, "Workflow of Document Processing Engine API") prints no client code:
this is the client its page describes, in raw HTTP: post the request, poll /status/{jobID}
while the answer is a JSON status, and take the document the same URL streams once done."""
# ruff: noqa
# mypy: ignore-errors
import os
import time

import requests

BASE_URL = os.environ["SEED_BASE_URL"]
API_KEY = os.environ["SEED_API_KEY"]


def convert(operation, body, max_wait=60):
    """Returns (submit answer, statuses seen, the final response)."""
    submitted = requests.post(f"{BASE_URL}/v1/{operation}", json=body, headers={"X-API-Key": API_KEY}).json()
    seen = []
    start = time.time()
    while time.time() - start < max_wait:
        response = requests.get(f"{BASE_URL}/status/{submitted['jobID']}", headers={"X-API-Key": API_KEY})
        if not response.headers["Content-Type"].startswith("application/json"):
            return submitted, seen, response  # the generated document
        status = response.json()
        seen.append(status["status"])
        if status["status"] == "errror":
            return submitted, seen, response
        time.sleep(0.5)
    raise TimeoutError("job did not complete")
