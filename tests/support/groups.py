"""How far a consumer group has committed: the condition for "everything read was handled"
(the dispatcher commits a record only once all its deliveries are finished)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from jobwire.config import Settings
from jobwire.kafka.clients import client_options
from jobwire.topics import Topics, retry_delays


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


async def dispatcher_idle(settings: Settings) -> bool:
    """Everything on jobs.events, the requests topic and the retry tiers handled and committed:
    any webhook those records could cause has been sent, so none is still on its way."""
    group, topics = dispatcher_group(settings), Topics(settings.topic_prefix)
    pending = [(group, topics.events), (f"{group}.requests", topics.requests),
               *((f"{group}.retry", topics.retry(d)) for d in retry_delays(settings))]
    for group_id, topic in pending:
        if await uncommitted(settings, group_id, topic):
            return False
    return True
