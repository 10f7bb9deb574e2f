"""Batch decoding with a bound, and a batch that cannot be decoded turned into a marker record
(no broker: batches built with aiokafka's own builder, read through the guard)."""

from __future__ import annotations

import gzip

import cramjam
import pytest
from aiokafka.record import default_records
from aiokafka.record.memory_records import MemoryRecords

from jobwire.kafka import codecs
from jobwire.kafka.codecs import BatchUndecodable, _GuardedRecords, undecodable

GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4


def batch(compression: int, values: list[bytes], base: int = 0) -> bytes:
    builder = default_records.DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=False, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 24)
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    built = bytearray(builder.build())
    built[0:8] = base.to_bytes(8, "big")  # the base offset, as the broker assigns it
    return bytes(built)


def read(raw: bytes) -> list[object]:
    records = _GuardedRecords(MemoryRecords(raw), "jobs.events", 0)
    out = []
    while records.has_next():
        out.extend(records.next_batch())
    return out


@pytest.mark.parametrize("compression", [0, GZIP, SNAPPY, LZ4, ZSTD])
def test_every_codec_reads_back(compression: int) -> None:
    values = [f"value {i}".encode() * 20 for i in range(50)]
    assert [r.value for r in read(batch(compression, values))] == values


@pytest.mark.parametrize("decode, compress", [
    (codecs.gzip_decode, lambda data: gzip.compress(data)),
    (codecs.zstd_decode, lambda data: bytes(cramjam.zstd.compress(data))),
    (codecs.lz4_decode, lambda data: bytes(cramjam.lz4.compress(data))),
    (codecs.snappy_decode, lambda data: bytes(cramjam.snappy.compress_raw(data))),
])
def test_a_batch_that_inflates_past_the_bound_is_refused(decode: object, compress: object,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecs, "MAX_INFLATED_BYTES", 1 << 20)
    bomb = compress(b"\0" * (4 << 20))  # type: ignore[operator]
    assert len(bomb) < 200_000
    with pytest.raises(BatchUndecodable, match="inflates past|corrupt"):
        decode(bomb)  # type: ignore[operator]
    assert decode(compress(b"fine" * 1000)) == b"fine" * 1000  # type: ignore[operator]


def test_an_undecodable_batch_becomes_one_marker_and_reading_goes_on() -> None:
    good_before = batch(0, [b"a", b"b"], base=0)
    broken = bytearray(batch(ZSTD, [b"c" * 100, b"d" * 100], base=2))
    broken[-10:] = b"\xff" * 10  # corrupt compressed data (and so its CRC)
    good_after = batch(0, [b"e"], base=4)
    records = read(good_before + bytes(broken) + good_after)
    assert [r.value for r in records] == [b"a", b"b", None, b"e"]
    marker = records[2]
    assert marker.offset == 2  # type: ignore[attr-defined]
    reason = undecodable(marker.headers)  # type: ignore[attr-defined]
    assert reason is not None and "2-3" in reason and "zstd" in reason


def test_install_puts_the_bounded_decoders_where_aiokafka_looks_for_them() -> None:
    from aiokafka.record._crecords import default_records as c_default

    import jobwire.kafka  # noqa: F401 - installs on import

    assert c_default.zstd_decode is codecs.zstd_decode and default_records.gzip_decode is codecs.gzip_decode
