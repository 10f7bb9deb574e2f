from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import botocore.config
import botocore.session
import pytest

from jobwire.devtools.s3server import S3Server, S3ServerError


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real S3-compatible server (S3Proxy) for the session, with an empty bucket `jobwire-test`."""
    cache = Path(os.environ.get("JOBWIRE_KAFKA_CACHE") or Path.home() / ".cache" / "jobwire")
    server = S3Server(cache, tmp_path_factory.mktemp("s3proxy"))
    try:
        server.start()
    except S3ServerError as first:  # a port can be taken between choosing it and binding it
        print(f"local S3 server failed to start, retrying once: {first}", file=sys.stderr)
        server = S3Server(cache, tmp_path_factory.mktemp("s3proxy-retry"))
        server.start()
    try:
        endpoint = S3Endpoint(server.endpoint_url, server.access_key, server.secret_key, "jobwire-test")
        # Credentials passed to this client only: nothing global is set for the session.
        client = botocore.session.get_session().create_client(
            "s3", region_name="us-east-1", endpoint_url=endpoint.endpoint_url,
            aws_access_key_id=endpoint.access_key, aws_secret_access_key=endpoint.secret_key,
            config=botocore.config.Config(s3={"addressing_style": "path"}))
        try:
            client.create_bucket(Bucket=endpoint.bucket)
        finally:
            client.close()
        yield endpoint
    finally:
        server.stop()
