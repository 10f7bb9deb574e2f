"""What customers import: ``jobwire.sdk.worker`` (run a handler for every job of an
operation, as a consumer-group member on Kafka) and ``jobwire.sdk.client`` (the HTTP API).

Nothing is imported here, so the client pulls in no server module and no Kafka client.
"""
