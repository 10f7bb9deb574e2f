"""An endpoint's health (the dispatcher's) and its snapshot (the API's) are two records: writing
health can never undo an API change the dispatcher had not read yet."""

from __future__ import annotations

from dataclasses import dataclass

from jobwire.webhooks.model import Endpoint, SealedSecret
from jobwire.webhooks.registry import EndpointRegistry, Health, health_key


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    topic: str = "webhooks.endpoints"
    partition: int = 0
    offset: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def snapshot(updated_at: str, **fields: object) -> Rec:
    endpoint = Endpoint("ep_1", "acme", str(fields.pop("url", "https://a.example/h")), "2026-01-01T00:00:00.000Z",
                        updated_at, (SealedSecret(str(fields.pop("sealed", "v2.old"))),), **fields)  # type: ignore[arg-type]
    return Rec(b"ep_1", endpoint.encode())


def health(at: str, **fields: object) -> Rec:
    record = Health("ep_1", at, fields.get("failing_since"), bool(fields.get("disabled", False)),  # type: ignore[arg-type]
                    fields.get("disabled_reason"))  # type: ignore[arg-type]
    return Rec(health_key("ep_1").encode(), record.encode())


def test_a_health_write_racing_a_rotation_and_a_new_url_keeps_both() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z"))
    # The API rotates the secret and moves the URL; the dispatcher, which has not read that yet,
    # records that the endpoint is failing (with the old whole endpoint, it used to overwrite it).
    registry.apply(snapshot("2026-01-01T00:00:02.000Z", url="https://b.example/h", sealed="v2.new"))
    registry.apply(health("2026-01-01T00:00:03.000Z", failing_since="2026-01-01T00:00:03.000Z"))
    endpoint = registry.endpoints["ep_1"]
    assert endpoint.url == "https://b.example/h" and endpoint.secrets[0].sealed == "v2.new"
    assert endpoint.failing_since == "2026-01-01T00:00:03.000Z"


def test_a_delete_is_not_undone_by_a_later_health_write() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z"))
    registry.apply(Rec(b"ep_1", None))
    registry.apply(health("2026-01-01T00:00:05.000Z", disabled=True, disabled_reason="410"))
    assert "ep_1" not in registry.endpoints


def test_enabling_through_the_api_after_an_automatic_disable_wins() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z"))
    registry.apply(health("2026-01-01T00:00:02.000Z", disabled=True, disabled_reason="endpoint returned 410"))
    assert registry.endpoints["ep_1"].disabled
    registry.apply(snapshot("2026-01-01T00:00:03.000Z", disabled=False))
    assert not registry.endpoints["ep_1"].disabled
    # Health records and snapshots may arrive in either order (other partitions): the times decide.
    registry.apply(health("2026-01-01T00:00:02.000Z", disabled=True, disabled_reason="endpoint returned 410"))
    assert not registry.endpoints["ep_1"].disabled


def test_a_malformed_health_record_is_skipped() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z"))
    registry.apply(Rec(health_key("ep_1").encode(), b'{"at": 5}'))
    assert registry.endpoints["ep_1"].failing_since is None
