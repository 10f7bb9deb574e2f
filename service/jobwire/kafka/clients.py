"""Connection options and client factories: every aiokafka client jobwire makes starts here."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from jobwire.config import KafkaSettings


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options common to every aiokafka client (bootstrap, TLS, SASL)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if "SSL" in kafka.security_protocol:
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    if kafka.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password
    return options


def consumer_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Options every consumer takes: the connection's, and how long an idle fetch may wait."""
    return {**client_options(kafka), "fetch_max_wait_ms": kafka.fetch_max_wait_ms}


def make_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer waiting for all in-sync replicas: no acknowledged write is lost."""
    options = {
        **client_options(kafka),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        **overrides,
    }
    return AIOKafkaProducer(**options)
