"""How far a consumer group has committed: the condition for "everything read was handled"
(the dispatcher commits a record only once all its deliveries are finished)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from jobwire.config import Settings
from jobwire.kafka.clients import client_options


async def uncommitted(settings: Settings, group_id: str, topic: str) -> int:
    """Records of ``topic`` the group has not committed past (0: it has handled them all)."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
        return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


def dispatcher_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}jobwire-dispatcher"
