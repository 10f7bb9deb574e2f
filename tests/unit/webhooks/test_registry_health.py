"""An endpoint's health (the dispatcher's) and its snapshot (the API's) are two records: writing
health can never undo an API change the dispatcher had not read yet."""

from __future__ import annotations

from dataclasses import dataclass

from jobwire.webhooks.model import Endpoint, SealedSecret
from jobwire.webhooks.registry import EndpointRegistry, Health, Resealed, health_key, resealed_key, secrets_digest


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    topic: str = "webhooks.endpoints"
    partition: int = 0
    offset: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def snapshot(updated_at: str, offset: int = 0, **fields: object) -> Rec:
    endpoint = Endpoint("ep_1", "acme", str(fields.pop("url", "https://a.example/h")), "2026-01-01T00:00:00.000Z",
                        updated_at, (SealedSecret(str(fields.pop("sealed", "v2.old"))),), **fields)  # type: ignore[arg-type]
    return Rec(b"ep_1", endpoint.encode(), offset=offset)


def health(at: str, seen: int | None = None, **fields: object) -> Rec:
    record = Health("ep_1", at, fields.get("failing_since"), bool(fields.get("disabled", False)),  # type: ignore[arg-type]
                    fields.get("disabled_reason"), seen)  # type: ignore[arg-type]
    return Rec(health_key("ep_1").encode(), record.encode())


def resealed(of: tuple[SealedSecret, ...], sealed: str) -> Rec:
    record = Resealed("ep_1", secrets_digest(of), (SealedSecret(sealed),))
    return Rec(resealed_key("ep_1").encode(), record.encode())


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


def test_health_counts_over_the_snapshot_it_was_written_against_whatever_the_clocks_say() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:10:00.000Z", offset=4))
    # The dispatcher's clock is ten minutes behind the API's: by time, its record is older.
    registry.apply(health("2026-01-01T00:00:01.000Z", seen=4, disabled=True, disabled_reason="410"))
    assert registry.endpoints["ep_1"].disabled
    # The API's clock is behind the dispatcher's: its re-enable, later on the log, still wins.
    registry.apply(snapshot("2025-12-31T00:00:00.000Z", offset=9, disabled=False))
    assert not registry.endpoints["ep_1"].disabled
    # A health record written before the dispatcher read that snapshot does not count over it.
    registry.apply(health("2026-01-01T00:20:00.000Z", seen=4, disabled=True, disabled_reason="410"))
    assert not registry.endpoints["ep_1"].disabled
    assert registry.snapshot_offset("ep_1") == 9


def test_a_health_record_naming_an_impossible_offset_is_skipped() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z", offset=1))
    for seen in (b'"x"', b"-1", b"true"):
        registry.apply(Rec(health_key("ep_1").encode(), b'{"endpoint_id": "ep_1", "at": "2026-01-01T00:00:05.000Z", '
                           b'"failing_since": null, "disabled": true, "disabled_reason": "x", "seen": ' + seen + b"}"))
        assert not registry.endpoints["ep_1"].disabled


OLD = (SealedSecret("v1.old"),)


def test_resealed_secrets_count_while_the_snapshot_holds_what_they_were_made_from() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z", sealed="v1.old"))
    registry.apply(resealed(OLD, "v2.resealed"))
    assert registry.endpoints["ep_1"].secrets[0].sealed == "v2.resealed"
    assert registry.snapshot("ep_1").secrets == OLD  # type: ignore[union-attr]
    # An API change written from a copy that had not read the reseal (a new URL, same secret):
    # the resealed secret stays.
    registry.apply(snapshot("2026-01-01T00:00:02.000Z", sealed="v1.old", url="https://b.example/h"))
    endpoint = registry.endpoints["ep_1"]
    assert endpoint.url == "https://b.example/h" and endpoint.secrets[0].sealed == "v2.resealed"


def test_a_reseal_written_after_an_api_rotation_it_had_not_read_is_ignored() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z", sealed="v1.old"))
    # The API rotates the secret; ``jobwire secrets rotate``, working from its earlier read,
    # then writes the old secret resealed: that must not bring the rotated-out secret back.
    registry.apply(snapshot("2026-01-01T00:00:02.000Z", sealed="v2.rotated"))
    registry.apply(resealed(OLD, "v2.resealed-old"))
    assert registry.endpoints["ep_1"].secrets[0].sealed == "v2.rotated"


def test_a_delete_is_not_undone_by_a_reseal_and_malformed_reseals_are_skipped() -> None:
    registry = EndpointRegistry()
    registry.apply(snapshot("2026-01-01T00:00:01.000Z", sealed="v1.old"))
    registry.apply(Rec(resealed_key("ep_1").encode(), b'{"endpoint_id": "ep_1", "of": "x", "secrets": []}'))
    registry.apply(Rec(resealed_key("ep_1").encode(), b"[1]"))
    assert registry.endpoints["ep_1"].secrets == OLD
    registry.apply(Rec(b"ep_1", None))
    registry.apply(resealed(OLD, "v2.resealed"))
    assert "ep_1" not in registry.endpoints
