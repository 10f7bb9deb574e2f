"""Consumers the dispatcher drives itself (pause, resume, seek, rebalance listeners), made
here with jobwire's connection options; the names it uses come from here, not from aiokafka."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from jobwire.config import KafkaSettings
from jobwire.errors import LogError
from jobwire.kafka.clients import consumer_options

Consumer = AIOKafkaConsumer
RebalanceListener = ConsumerRebalanceListener

__all__ = ["Consumer", "ConsumerRecord", "RebalanceListener", "TopicPartition", "fetch", "group_consumer"]


def group_consumer(kafka: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer-group member with manual commits, starting from the earliest offset;
    ``overrides``: aiokafka's options over these and the settings' (a fetch wait, a session)."""
    options = {**consumer_options(kafka), "group_id": group_id, "enable_auto_commit": False,
               "auto_offset_reset": "earliest", **overrides}
    return AIOKafkaConsumer(**options)


async def fetch(consumer: Consumer, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """``getmany``, with aiokafka's errors translated: ``LogError`` when the log cannot be read."""
    try:
        return await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    except KafkaError as exc:
        raise LogError(f"fetching records failed: {exc}", retriable=exc.retriable) from exc
