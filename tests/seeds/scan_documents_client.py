"""Seed 002 (Scan Documents, "Task Operations") prints no client code: this is the client its
page describes, in raw HTTP: POST to an operation's endpoint, then GET the task until its
status is completed or failed, reading ``result`` as the page says."""
# ruff: noqa
# mypy: ignore-errors
import os
import time

import requests

BASE_URL = os.environ["SEED_BASE_URL"]
API_KEY = os.environ["SEED_API_KEY"]


def run_operation(kind, operation, parameters, max_wait=60):
    """kind: image-operations or pdf-operations. Returns (task as created, task when done)."""
    created = requests.post(f"{BASE_URL}/v1/{kind}/{operation}", json=parameters,
                            headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert created["id"].startswith("task_") and created["result"] == {}
    start = time.time()
    while time.time() - start < max_wait:
        task = requests.get(f"{BASE_URL}/v1/tasks/{created['id']}", headers={"Authorization": f"Bearer {API_KEY}"}).json()
        if task["status"] in ("completed", "failed"):
            return created, task
        assert task["result"] == {}, "usually empty while pending or processing"
        time.sleep(0.5)
    raise TimeoutError("task did not finish")
