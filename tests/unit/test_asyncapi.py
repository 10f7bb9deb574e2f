"""schemas/asyncapi.yaml, as /asyncapi.json serves it: valid for the official AsyncAPI parser
(the npm @asyncapi/parser package, run with node), and complete: every event type the code
knows is a message of jobs.events, with the same JSON Schemas the code validates with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from jobwire.api.system import asyncapi_document
from jobwire.events import EVENT_TYPES
from jobwire.topics import Topics

ROOT = Path(__file__).parents[2]
NODE_MODULES = ROOT / ".venv" / "node" / "node_modules"


def test_the_official_parser_finds_no_error(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (NODE_MODULES / "@asyncapi" / "parser").exists():
        pytest.fail("node and @asyncapi/parser are needed: `make test` installs the parser into .venv/node")
    document = tmp_path / "asyncapi.json"
    document.write_bytes(asyncapi_document())
    parsed = subprocess.run(["node", str(ROOT / "tests" / "support" / "asyncapi_validate.cjs"), str(document)],
                            env={**os.environ, "NODE_PATH": str(NODE_MODULES)}, capture_output=True, text=True,
                            timeout=120)
    diagnostics = [json.loads(line) for line in parsed.stdout.splitlines() if line.startswith("{")]
    errors = [d for d in diagnostics if d["severity"] == 0]
    assert parsed.returncode == 0 and errors == [], parsed.stdout[-3000:] + parsed.stderr[-3000:]


def test_every_event_type_is_a_message_of_jobs_events_with_its_data_schema() -> None:
    spec = orjson.loads(asyncapi_document())
    channel = spec["channels"]["jobsEvents"]
    assert channel["address"] == Topics().events
    names = {spec["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]: ref["$ref"].rsplit("/", 1)[1]
             for ref in channel["messages"].values()}
    assert set(EVENT_TYPES) <= set(names)
    for event_type in EVENT_TYPES:
        payload = spec["components"]["messages"][names[event_type]]["payload"]
        data_ref = payload["allOf"][1]["properties"]["data"]["$ref"]
        assert data_ref.endswith("DataJob" + "".join(p.capitalize() for p in event_type.split(".")[1].split("_")))


def test_the_topics_it_names_are_the_ones_jobwire_makes() -> None:
    spec = orjson.loads(asyncapi_document())
    topics = Topics()
    made = {topics.events, topics.events_invalid, topics.attempts, topics.dead, topics.requests}
    addresses = {channel["address"] for channel in spec["channels"].values() if channel["address"]}
    assert addresses == made


def test_every_event_and_webhook_has_an_example_the_code_accepts() -> None:
    from jobwire.events import decode
    from jobwire.validation import validator

    spec = orjson.loads(asyncapi_document())
    messages = spec["components"]["messages"]
    for channel in ("jobsEvents", "webhookEndpoint"):
        for ref in spec["channels"][channel]["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            if message["name"] == "job event (binary mode)":
                continue
            [example] = message["examples"]
            if channel == "jobsEvents":
                assert decode(orjson.dumps(example["payload"])).type == message["name"]
            else:
                payload = example["payload"]
                assert payload["type"] == message["name"] and set(payload) == {"type", "timestamp", "data"}
                kind = message["name"]
                schema = "task.json" if kind.startswith("task.") else f"operational/{kind}.json"
                if kind != "webhook.test":
                    assert validator(schema).violations(payload["data"]) == [], kind
