"""Settings: defaults are safe, and every bad variable is named in the error."""

from __future__ import annotations

import ipaddress

import pytest

from jobwire.config import SVIX_RETRY_SCHEDULE_S, ConfigError, load_settings


def test_defaults_are_safe() -> None:
    settings = load_settings({})
    assert settings.host == "127.0.0.1"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092" and not settings.kafka.external
    assert settings.api_keys == () and settings.secret_key is None and not settings.dev
    assert settings.retry_schedule_s == SVIX_RETRY_SCHEDULE_S
    assert settings.allowed_targets == ()


def test_full_configuration() -> None:
    settings = load_settings({
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
        "JOBWIRE_API_KEYS": "acme:key_acme_0123456789, globex:key_globex_0123456789",
        "JOBWIRE_ALLOWED_TARGETS": "127.0.0.1/32,::1",
        "JOBWIRE_RETRY_SCHEDULE": "0,1,2.5",
        "JOBWIRE_PORT": "8080",
        "JOBWIRE_TOPIC_PREFIX": "staging.",
    })
    assert settings.kafka.external
    assert settings.tenant_for_key("key_globex_0123456789") == "globex"
    assert settings.tenant_for_key("key_globex_012345678") is None
    assert settings.allowed_targets == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert settings.retry_schedule_s == (0.0, 1.0, 2.5)
    assert settings.port == 8080 and settings.topic_prefix == "staging."


def test_dev_mode_generates_a_key_and_secret() -> None:
    settings = load_settings({"JOBWIRE_DEV": "1"})
    assert settings.api_keys[0][0] == "dev" and len(settings.api_keys[0][1]) >= 16
    assert settings.secret_key


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"JOBWIRE_PORT": "http"}, "JOBWIRE_PORT"),
        ({"JOBWIRE_PORT": "70000"}, "JOBWIRE_PORT"),
        ({"JOBWIRE_API_KEYS": "acme"}, "JOBWIRE_API_KEYS"),
        ({"JOBWIRE_API_KEYS": "acme:short"}, "JOBWIRE_API_KEYS"),
        ({"JOBWIRE_ALLOWED_TARGETS": "localhost"}, "JOBWIRE_ALLOWED_TARGETS"),
        ({"JOBWIRE_RETRY_SCHEDULE": "0,5m"}, "JOBWIRE_RETRY_SCHEDULE"),
        ({"JOBWIRE_RETRY_SCHEDULE": "0,-5"}, "JOBWIRE_RETRY_SCHEDULE"),
        ({"JOBWIRE_DEV": "maybe"}, "JOBWIRE_DEV"),
        ({"JOBWIRE_TOPIC_PREFIX": "a b"}, "JOBWIRE_TOPIC_PREFIX"),
        ({"JOBWIRE_RETENTION_DAYS": "forever"}, "JOBWIRE_RETENTION_DAYS"),
        ({"JOBWIRE_ENDPOINT_DISABLE_AFTER_S": "0"}, "JOBWIRE_ENDPOINT_DISABLE_AFTER_S"),
        ({"JOBWIRE_SECRET_KEY": "short"}, "JOBWIRE_SECRET_KEY"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_MECHANISM": "GSSAPI"},
         "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
        ({"JOBWIRE_REPLICATION_FACTOR": "three"}, "JOBWIRE_REPLICATION_FACTOR"),
        ({"JOBWIRE_INSTANCE_ID": "pod 1"}, "JOBWIRE_INSTANCE_ID"),
        ({"JOBWIRE_GROUP_SESSION_TIMEOUT_S": "1"}, "JOBWIRE_GROUP_SESSION_TIMEOUT_S"),
        ({"JOBWIRE_REPLICATION_FACTOR": "0"}, "JOBWIRE_REPLICATION_FACTOR"),
        ({"JOBWIRE_REPLICATION_FACTOR": "2", "JOBWIRE_MIN_INSYNC_REPLICAS": "3"}, "JOBWIRE_MIN_INSYNC_REPLICAS"),
        ({"JOBWIRE_PUBLIC_URL": "jobs.example.com"}, "JOBWIRE_PUBLIC_URL"),
        ({"JOBWIRE_PUBLIC_URL": "https://jobs.example.com/api"}, "JOBWIRE_PUBLIC_URL"),
        ({"JOBWIRE_PUBLIC_URL": "https://u:p@jobs.example.com"}, "JOBWIRE_PUBLIC_URL"),
        ({"KAFKA_FETCH_MAX_WAIT_MS": "0"}, "KAFKA_FETCH_MAX_WAIT_MS"),
        ({"JOBWIRE_SECRETS_PER_ENDPOINT": "1"}, "JOBWIRE_SECRETS_PER_ENDPOINT"),
        ({"JOBWIRE_ENDPOINTS_PER_TENANT": "none"}, "JOBWIRE_ENDPOINTS_PER_TENANT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable + ": ")


def test_api_keys_never_appear_in_errors_or_repr() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789,broken"})
    assert "key_acme_0123456789" not in str(caught.value)
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_SECRET_KEY": "config-secret-key-0123456789"})
    assert "key_acme" not in repr(settings) and "config-secret-key" not in repr(settings)
