"""Seed 004's Python sample (Pulse, "Async Processing"): submit with ``async`` and the polling
loop, as printed. The sample calls Pulse's SDK (``client.extract``, ``client.jobs.get_job``);
here those are the raw HTTP calls they make (the curl examples of the same page), with the
same field reads, against ``BASE_URL`` (the Pulse profile under test)."""
# ruff: noqa
# mypy: ignore-errors
import os
import time
from types import SimpleNamespace

import requests

BASE_URL = os.environ["SEED_BASE_URL"]
API_KEY = os.environ["SEED_API_KEY"]


class Jobs:
    def get_job(self, job_id):
        response = requests.get(f"{BASE_URL}/job/{job_id}", headers={"x-api-key": API_KEY})
        return SimpleNamespace(**{"result": None, "error": None, **response.json()})

    def cancel_job(self, job_id):
        return requests.delete(f"{BASE_URL}/job/{job_id}", headers={"x-api-key": API_KEY}).json()


class Pulse:
    def __init__(self, api_key):
        self.jobs = Jobs()

    def extract(self, file_url, async_=False):
        response = requests.post(f"{BASE_URL}/extract", headers={"x-api-key": API_KEY},
                                 json={"file_url": file_url, "async": async_})
        return SimpleNamespace(**response.json())


def run():
    client = Pulse(api_key="YOUR_API_KEY")

    # Async extraction
    job = client.extract(
        file_url="https://example.com/large-report.pdf",
        async_=True  # Note: async_ in Python (async is reserved)
    )
    print(f"Job ID: {job.job_id}")
    print(f"Status: {job.status}")  # "pending"

    job_id = job.job_id

    while True:
        status = client.jobs.get_job(job_id=job_id)
        print(f"Status: {status.status}")

        if status.status == "completed":
            print("Done!")
            print(f"Result: {status.result}")
            break
        elif status.status == "failed":
            print(f"Failed: {status.error}")
            break
        elif status.status == "canceled":
            print("Job was canceled")
            break

        time.sleep(2)  # Poll every 2 seconds
    return status
