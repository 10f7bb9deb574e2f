"""Webhook endpoints as the compacted topic ``webhooks.endpoints`` says they are.

The API writes endpoint snapshots (and tombstones on delete); the dispatcher writes one when a
410 or a long failure disables an endpoint. Both keep a registry fed from the topic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from jobwire.config import KafkaSettings
from jobwire.kafka.readers import LogReader
from jobwire.positions import AppliedPositions, Position
from jobwire.records import RawRecord, RecordSink, skipped
from jobwire.timeutil import is_time
from jobwire.validation import FieldChecks, checked_record
from jobwire.webhooks.keys import SCHEMES
from jobwire.webhooks.model import Endpoint, SealedSecret
from jobwire.webhooks.redemptions import REDEEMED_KEY_SUFFIX, Redemption, Redemptions


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _optional_time(value: Any) -> bool:
    return value is None or is_time(value)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _secrets(value: Any) -> bool:
    # At least one: the dispatcher signs with every live secret and has nothing to sign with otherwise.
    return isinstance(value, list) and bool(value) and all(
        isinstance(s, dict) and _text(s.get("sealed")) and _optional_time(s.get("expires_at")) for s in value)


def _event_types(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(t, str) for t in value))


def _rate(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)


def _filter(value: Any) -> bool:
    """A content filter the dispatcher can apply (webhooks/filters.py) without failing."""
    if value is None:
        return True

    def scalar(v: Any) -> bool:
        return v is None or isinstance(v, (str, int, float, bool))
    return isinstance(value, dict) and all(
        isinstance(field, str) and (scalar(condition) or (
            isinstance(condition, dict) and set(condition) == {"in"} and isinstance(condition["in"], list)
            and all(scalar(option) for option in condition["in"])))
        for field, condition in value.items())


def _names(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(_text(name) for name in value))


#: What each field of an endpoint record must be, so that a record that decodes cannot break a
#: later request (sorting by created_at, comparing expiry times, signing, rate limiting).
#: Fields not named here are left to ``Endpoint`` itself.
ENDPOINT_FIELDS: FieldChecks = {
    "id": (_text, "a non-empty string"),
    "tenant": (_text, "a non-empty string"),
    "url": (_text, "a non-empty string"),
    "created_at": (is_time, "an RFC 3339 time"),
    "updated_at": (is_time, "an RFC 3339 time"),
    "secrets": (_secrets, "a non-empty list of {sealed, expires_at?}"),
    "event_types": (_event_types, "null or a list of strings"),
    "description": (_optional_text, "null or a string"),
    "disabled": (_flag, "a boolean"),
    "disabled_reason": (_optional_text, "null or a string"),
    "rate_limit_per_s": (_rate, "null or a positive number"),
    "failing_since": (_optional_time, "null or an RFC 3339 time"),
    "signing": (lambda value: value in SCHEMES, f"one of {', '.join(SCHEMES)}"),
    "filter": (_filter, "null or an object of field: value or {in: [values]}"),
    "sealed_request": (_optional_text, "null or a string"),
    "header_names": (_names, "null or a list of strings"),
    "auth_type": (lambda value: value in (None, "bearer", "basic"), "null, bearer or basic"),
    "tls_client_subject": (_optional_text, "null or a string"),
    "tls_client_not_after": (_optional_text, "null or a string"),
    "tls_ca": (_optional_text, "null or a string"),
    "ordering": (lambda value: value in (None, "job"), 'null or "job"'),
}


def decode_endpoint(key: bytes | None, raw: bytes) -> Endpoint:
    """An endpoint snapshot, checked field by field; ``ValueError`` saying what is wrong."""
    data = checked_record(raw, ENDPOINT_FIELDS, "endpoint")
    if key is not None and key.decode(errors="replace") != data.get("id"):
        raise ValueError("the record key is not the endpoint id")  # a later tombstone could not remove it
    try:
        return Endpoint.decode(raw)
    except Exception as exc:  # a required field missing, an unknown one present, ...
        raise ValueError(f"not an endpoint: {type(exc).__name__}: {exc}") from None


HEALTH_KEY_SUFFIX = "#health"
RESEALED_KEY_SUFFIX = "#sealed"


def health_key(endpoint_id: str) -> str:
    """The key of an endpoint's health record (beside its own key on the same topic)."""
    return endpoint_id + HEALTH_KEY_SUFFIX


def resealed_key(endpoint_id: str) -> str:
    """The key of an endpoint's secrets sealed again under the newest key (``jobwire secrets rotate``)."""
    return endpoint_id + RESEALED_KEY_SUFFIX


@dataclass(frozen=True, slots=True)
class Health:
    """What the dispatcher learns of an endpoint by delivering to it, kept apart from the API's
    snapshot: writing it can never overwrite an API change it has not read yet (a rotation, a
    new URL, a delete). It counts only over the snapshot the dispatcher had read when it wrote
    it (``seen``, that snapshot's offset; the topic has one partition): re-enabling through the
    API after an automatic disable wins, and no clocks of two hosts are compared. Records
    without ``seen`` (written before it existed) count when newer than the snapshot."""

    endpoint_id: str
    at: str
    failing_since: str | None
    disabled: bool
    disabled_reason: str | None
    seen: int | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes) -> Health:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not is_time(data.get("at")) or not _optional_time(data.get("failing_since")) \
                or not isinstance(data.get("disabled"), bool) or not _optional_text(data.get("disabled_reason")):
            raise ValueError("not an endpoint health record")
        seen = data.get("seen")
        if seen is not None and (not isinstance(seen, int) or isinstance(seen, bool) or seen < 0):
            raise ValueError("health field seen must be a log offset")
        return cls(str(data["endpoint_id"]), data["at"], data["failing_since"], data["disabled"],
                   data["disabled_reason"], seen)

    def over(self, endpoint: Endpoint, snapshot_offset: int | None) -> Endpoint:
        if self.seen is not None and snapshot_offset is not None:
            current = self.seen >= snapshot_offset
        else:
            current = self.at > endpoint.updated_at  # canonical RFC 3339 UTC: compares as text
        if not current:
            return endpoint
        return endpoint.with_changes(failing_since=self.failing_since, disabled=self.disabled,
                                     disabled_reason=self.disabled_reason)


def secrets_digest(secrets: tuple[SealedSecret, ...], sealed_request: str | None = None) -> str:
    """Names the sealed values an endpoint holds (its request options only when it has some,
    so a digest written before they existed still names the same endpoint)."""
    named: object = secrets if sealed_request is None else (secrets, sealed_request)
    return hashlib.sha256(orjson.dumps(named)).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Resealed:
    """An endpoint's secrets sealed again under the newest key by ``jobwire secrets rotate``,
    kept apart from the API's snapshot like ``Health``. It counts only while the snapshot still
    holds the very secrets it was made from (``of``, their digest): an API change written in the
    meantime (a rotation, a delete) is never undone, and a new URL keeps the resealed secrets.
    Being a record of its own, it survives compaction beside the snapshot it applies to."""

    endpoint_id: str
    of: str
    secrets: tuple[SealedSecret, ...]
    #: The endpoint's custom headers and auth, sealed again (None: it has none).
    sealed_request: str | None = None

    def encode(self) -> bytes:
        if self.sealed_request is None:  # as before request options existed
            return orjson.dumps({"endpoint_id": self.endpoint_id, "of": self.of, "secrets": self.secrets})
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes) -> Resealed:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not _text(data.get("endpoint_id")) or not _text(data.get("of")) \
                or not _secrets(data.get("secrets")):
            raise ValueError("not a resealed-secrets record")
        sealed_request = data.get("sealed_request")
        if sealed_request is not None and not _text(sealed_request):
            raise ValueError("not a resealed-secrets record")
        return cls(data["endpoint_id"], data["of"],
                   tuple(SealedSecret(s["sealed"], s.get("expires_at")) for s in data["secrets"]), sealed_request)

    def over(self, endpoint: Endpoint) -> Endpoint:
        if self.of != secrets_digest(endpoint.secrets, endpoint.sealed_request):
            return endpoint
        return endpoint.with_changes(secrets=self.secrets, sealed_request=self.sealed_request)


class EndpointRegistry:
    def __init__(self) -> None:
        #: Every endpoint as it stands: the API's snapshot with the dispatcher's health over it.
        self.endpoints: dict[str, Endpoint] = {}
        self.positions = AppliedPositions()
        self._snapshots: dict[str, Endpoint] = {}
        #: Where each snapshot sits on the topic (None when put by hand): what ``Health.seen`` names.
        self._snapshot_offsets: dict[str, int | None] = {}
        self._health: dict[str, Health] = {}
        self._resealed: dict[str, Resealed] = {}
        #: Portal links redeemed (the API's; other readers keep them too, bounded by time).
        self.redemptions = Redemptions()

    def apply(self, record: RawRecord) -> None:
        """Apply one record of the topic. A malformed one is skipped (counted and logged): the
        endpoint keeps its previous snapshot."""
        key = (record.key or b"").decode(errors="replace")
        if key.endswith(HEALTH_KEY_SUFFIX):
            self._apply_beside(self._health, Health, key.removesuffix(HEALTH_KEY_SUFFIX), record)
            return
        if key.endswith(RESEALED_KEY_SUFFIX):
            self._apply_beside(self._resealed, Resealed, key.removesuffix(RESEALED_KEY_SUFFIX), record)
            return
        if key.endswith(REDEEMED_KEY_SUFFIX):
            try:
                self.redemptions.apply(key, record.value)
            except ValueError as exc:
                skipped(record.topic, Position(record.partition, record.offset), str(exc))
            return
        if record.value is None:
            self._snapshots.pop(key, None)
            self._snapshot_offsets.pop(key, None)
            self.endpoints.pop(key, None)
            return
        try:
            endpoint = decode_endpoint(record.key, record.value)
        except ValueError as exc:
            skipped(record.topic, Position(record.partition, record.offset), str(exc))
            return
        self._snapshots[endpoint.id] = endpoint
        self._snapshot_offsets[endpoint.id] = record.offset
        self._merge(endpoint.id)

    def put(self, endpoint: Endpoint) -> None:
        """A snapshot as the API writes it (tests, and tools that hold one)."""
        self._snapshots[endpoint.id] = endpoint
        self._snapshot_offsets[endpoint.id] = None
        self._merge(endpoint.id)

    def snapshot(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint as the API last wrote it, without the records kept beside it."""
        return self._snapshots.get(endpoint_id)

    def snapshot_offset(self, endpoint_id: str) -> int | None:
        """The offset of the endpoint's snapshot as read from the topic (for ``Health.seen``)."""
        return self._snapshot_offsets.get(endpoint_id)

    def _apply_beside(self, records: dict[str, Any], kind: Any, endpoint_id: str, record: RawRecord) -> None:
        if record.value is None:
            records.pop(endpoint_id, None)
        else:
            try:
                records[endpoint_id] = kind.decode(record.value)
            except (ValueError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
                skipped(record.topic, Position(record.partition, record.offset), str(exc))
                return
        self._merge(endpoint_id)

    def note_health(self, health: Health) -> None:
        """The dispatcher's own write, applied at once (before it reads it back)."""
        self._health[health.endpoint_id] = health
        self._merge(health.endpoint_id)

    def _merge(self, endpoint_id: str) -> None:
        snapshot = self._snapshots.get(endpoint_id)
        if snapshot is None:
            self.endpoints.pop(endpoint_id, None)
            return
        resealed, health = self._resealed.get(endpoint_id), self._health.get(endpoint_id)
        endpoint = resealed.over(snapshot) if resealed is not None else snapshot
        if health is not None:
            endpoint = health.over(endpoint, self._snapshot_offsets.get(endpoint_id))
        self.endpoints[endpoint_id] = endpoint

    def get(self, tenant: str, endpoint_id: str) -> Endpoint | None:
        endpoint = self.endpoints.get(endpoint_id)
        return endpoint if endpoint is not None and endpoint.tenant == tenant else None

    def of_tenant(self, tenant: str) -> list[Endpoint]:
        return sorted((e for e in self.endpoints.values() if e.tenant == tenant), key=lambda e: (e.created_at, e.id))

    def subscribed(self, tenant: str, event_type: str) -> list[Endpoint]:
        """Endpoints of ``tenant`` whose filter takes ``event_type``, disabled ones included."""
        return [e for e in self.endpoints.values() if e.tenant == tenant and e.wants(event_type)]


class EndpointWriter:
    """Endpoint snapshots, and tombstones for deleted endpoints, on the compacted topic; and
    the portal's redemptions, which share it."""

    def __init__(self, writer: RecordSink) -> None:
        self._writer = writer

    async def put(self, endpoint: Endpoint) -> Position:
        return await self._writer.send(endpoint.id, endpoint.encode())

    async def reseal(self, resealed: Resealed) -> Position:
        return await self._writer.send(resealed_key(resealed.endpoint_id), resealed.encode())

    async def redeem(self, redemption: Redemption) -> Position:
        return await self._writer.send(redemption.key, redemption.encode())

    async def forget_redemption(self, key: str) -> Position:
        return await self._writer.send(key, None)

    async def delete(self, endpoint_id: str) -> Position:
        await self._writer.send(health_key(endpoint_id), None)
        await self._writer.send(resealed_key(endpoint_id), None)
        return await self._writer.send(endpoint_id, None)


async def read_registry(kafka: KafkaSettings, topic: str) -> EndpointRegistry:
    """Every endpoint on ``topic`` as of now: the topic read once, up to its current end."""
    registry = EndpointRegistry()
    async with LogReader(kafka, topic) as reader:
        ends = await reader.end_offsets()
        read: dict[int, int] = {}
        if any(ends.values()):
            async for batch in reader.raw_batches(timeout_ms=500):
                for record in batch:
                    registry.apply(record)
                    read[record.partition] = record.offset + 1
                if all(read.get(p, 0) >= end for p, end in ends.items()):
                    break
    return registry
