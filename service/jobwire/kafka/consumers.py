"""Consumers the dispatcher drives itself (pause, resume, seek, rebalance listeners), made
here with jobwire's connection options; the names it uses come from here, not from aiokafka."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from jobwire.config import KafkaSettings
from jobwire.kafka.clients import client_options

Consumer = AIOKafkaConsumer
RebalanceListener = ConsumerRebalanceListener

__all__ = ["Consumer", "ConsumerRecord", "RebalanceListener", "TopicPartition", "group_consumer"]


def group_consumer(kafka: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer-group member with manual commits, starting from the earliest offset."""
    return AIOKafkaConsumer(**client_options(kafka), group_id=group_id, enable_auto_commit=False,
                            auto_offset_reset="earliest", **overrides)
