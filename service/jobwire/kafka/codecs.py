"""Compressed record batches, decoded with a bound, and a batch that cannot be decoded turned
into one marker record instead of an error out of every fetch.

aiokafka inflates a batch whole, with no limit (a gzip batch of a megabyte can inflate to a
gigabyte), and a batch it cannot decode (an unknown codec, corrupt data, a CRC mismatch) makes
``getmany`` raise for that partition on every call: the API's feed and every consumer stop on
it for good. ``install`` (run when ``jobwire.kafka`` is imported, so every client jobwire makes
has it) puts bounded decoders in aiokafka's record modules, and hands each fetch's batches
through ``_GuardedBatch``: a batch that fails comes out as one record carrying the
``jobwire-undecodable`` header with the reason, and reading goes on after the batch. Readers
set the marker aside like any record they cannot use (``undecodable``); it is logged and
counted here once per batch. What cannot be decoded cannot be copied: the marker carries the
batch's offsets, codec and reason, not its records.
"""

from __future__ import annotations

import importlib
import logging
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cramjam

from jobwire.errors import JobwireError
from jobwire.metrics import UNDECODABLE_BATCHES

log = logging.getLogger(__name__)

#: Most bytes one batch may inflate to (Kafka's own fetch limits are 1-50 MiB compressed).
MAX_INFLATED_BYTES = 64 << 20
UNDECODABLE = "jobwire-undecodable"
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_XERIAL_MAGIC = b"\x82SNAPPY\x00"


class BatchUndecodable(JobwireError):
    """A batch that cannot be decoded: corrupt, or inflating past the bound."""


def gzip_decode(payload: Any) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # a gzip or zlib header, detected
    try:
        out = inflater.decompress(bytes(payload), MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise BatchUndecodable(f"gzip data is corrupt: {exc}") from None
    if len(out) > MAX_INFLATED_BYTES:
        raise BatchUndecodable(f"the gzip batch inflates past {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise BatchUndecodable("the gzip data ends early")
    return out


def _bounded(name: str, decode_into: Callable[[bytes, bytearray], int], payload: bytes, budget: int) -> bytes:
    """Decode into a buffer that grows (by 4) up to ``budget``: cramjam refuses to overrun it."""
    size = min(budget, max(64 << 10, len(payload) * 4))
    while True:
        out = bytearray(size)
        try:
            written = decode_into(payload, out)
            return bytes(out[:written])
        except cramjam.DecompressionError as exc:
            if size >= budget:
                raise BatchUndecodable(f"the {name} batch inflates past {budget} bytes, or is corrupt: {exc}") from None
            size = min(budget, size * 4)


def snappy_decode(payload: Any) -> bytes:
    data = bytes(payload)
    if not data.startswith(_XERIAL_MAGIC):
        return _bounded("snappy", cramjam.snappy.decompress_raw_into, data, MAX_INFLATED_BYTES)
    # Java clients frame snappy as xerial blocks: a 16-byte header, then (length, raw block)*.
    out, cursor = bytearray(), 16
    while cursor < len(data):
        length = int.from_bytes(data[cursor:cursor + 4], "big")
        cursor += 4
        block = data[cursor:cursor + length]
        cursor += length
        out += _bounded("snappy", cramjam.snappy.decompress_raw_into, block, MAX_INFLATED_BYTES - len(out))
    return bytes(out)


def lz4_decode(payload: Any) -> bytes:
    return _bounded("lz4", cramjam.lz4.decompress_into, bytes(payload), MAX_INFLATED_BYTES)


def zstd_decode(payload: Any) -> bytes:
    return _bounded("zstd", cramjam.zstd.decompress_into, bytes(payload), MAX_INFLATED_BYTES)


DECODERS = {"gzip_decode": gzip_decode, "snappy_decode": snappy_decode, "lz4_decode": lz4_decode,
            "zstd_decode": zstd_decode}


class _Marker:
    """Stands for a batch that did not decode, where aiokafka expects a record."""

    checksum = None
    key = None
    value = None
    timestamp_type = 0

    def __init__(self, offset: int, timestamp: int, headers: list[tuple[str, bytes]]) -> None:
        self.offset = offset
        self.timestamp = timestamp
        self.headers = headers


class _GuardedBatch:
    def __init__(self, batch: Any, topic: str, partition: int) -> None:
        self._batch = batch
        self._where = (topic, partition)
        self._corrupt = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        self._corrupt = not self._batch.validate_crc()
        return True  # the mismatch comes out as the marker, not as an error out of every fetch

    def __iter__(self) -> Iterator[Any]:
        base = self._batch.base_offset
        taken = base
        if not self._corrupt:
            try:
                for record in self._batch:
                    taken = record.offset + 1
                    yield record
                return
            except Exception as exc:  # noqa: BLE001 - whatever aiokafka raises decoding it
                reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "CRC mismatch: the batch is corrupt"
        codec = CODECS.get(getattr(self._batch, "compression_type", 0), "unknown")
        topic, partition = self._where
        UNDECODABLE_BATCHES.labels(topic=topic).inc()
        log.warning("undecodable batch skipped topic=%s partition=%d offsets=%d-%d codec=%s reason=%s", topic,
                    partition, taken, self._batch.next_offset - 1, codec, reason[:300])
        detail = f"batch {taken}-{self._batch.next_offset - 1} ({codec}) could not be decoded: {reason}"[:2000]
        yield _Marker(taken, -1, [(UNDECODABLE, detail.encode())])


class _GuardedRecords:
    def __init__(self, records: Any, topic: str, partition: int) -> None:
        self._records = records
        self._where = (topic, partition)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None or not hasattr(batch, "base_offset"):
            return batch  # message format v0/v1 (producers from before Kafka 0.11): as aiokafka reads it
        return _GuardedBatch(batch, *self._where)


def undecodable(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The reason, when a record is the marker of a batch that could not be decoded."""
    for name, value in headers or ():
        if name == UNDECODABLE:
            return value.decode(errors="replace")
    return None


_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    # aiokafka's internals, reached by name (they have no types; the lock pins the version).
    modules: list[Any] = []
    for name in ("aiokafka.record.default_records", "aiokafka.record.legacy_records",
                 "aiokafka.record._crecords.default_records", "aiokafka.record._crecords.legacy_records"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:  # built without its C extensions
            continue
    fetcher: Any = importlib.import_module("aiokafka.consumer.fetcher")
    for module in modules:
        for name, decoder in DECODERS.items():
            if hasattr(module, name):
                setattr(module, name, decoder)

    original = fetcher.PartitionRecords.__init__

    def guarded(self: Any, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        original(self, tp, _GuardedRecords(records, tp.topic, tp.partition), *args, **kwargs)

    fetcher.PartitionRecords.__init__ = guarded
    _installed = True
