"""The Kafka adapter: the only package that imports aiokafka.

Client factories (clients), topic administration (admin), writers, readers and quarantine.
aiokafka's errors are translated to :class:`jobwire.errors.LogError` here, and its batch
decoding is bounded (codecs).
"""

from jobwire.kafka.codecs import install as _install_codecs

_install_codecs()
