"""jobwire: job state changes as an event log on Kafka, signed webhooks and a status API on top."""

__version__ = "0.1.0"
