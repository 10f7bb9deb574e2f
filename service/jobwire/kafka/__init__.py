"""The Kafka adapter: the only package that imports aiokafka.

Client factories (clients), topic administration (admin), writers, readers and quarantine.
aiokafka's errors are translated to :class:`jobwire.errors.LogError` here.
"""
