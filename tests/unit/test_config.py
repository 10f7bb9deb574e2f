"""Settings: defaults are safe, and every bad variable is named in the error."""

from __future__ import annotations

import ipaddress
from pathlib import Path

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


@pytest.mark.parametrize(("keys", "why"), [
    ("acme:key_acme_0123456789,globex:key_acme_0123456789", "listed for tenants 'acme' and 'globex'"),
    ("ac me:key_acme_0123456789", "tenant field of every event"),
    ("acme/x:key_acme_0123456789", "tenant field of every event"),
    (f"{'t' * 65}:key_acme_0123456789", "tenant field of every event"),
    ("acme:aaaaaaaaaaaaaaaaaaaa", "too little entropy"),
    ("acme:replace_me_with_a_key_0123", "placeholder"),
])
def test_api_keys_name_one_tenant_each_and_tenants_are_valid_event_tenants(keys: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        load_settings({"JOBWIRE_API_KEYS": keys})
    assert "key_acme_0123456789" not in str(caught.value) and "a" * 20 not in str(caught.value)


def test_the_tenant_name_rule_is_the_event_schemas() -> None:
    import json
    from pathlib import Path

    from jobwire.config import TENANT_NAME

    schema = json.loads((Path(__file__).parents[2] / "schemas" / "event.json").read_text())
    assert f"^{TENANT_NAME.pattern}$" == schema["properties"]["tenant"]["pattern"]
    two_keys = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789,acme:key_acme_9876543210"})
    assert [tenant for tenant, _ in two_keys.api_keys] == ["acme", "acme"], "a tenant may have several keys"


def test_secrets_can_come_from_files_and_never_from_both(tmp_path: Path) -> None:
    keys, secret = tmp_path / "api-keys", tmp_path / "secret-key"
    keys.write_text("acme:key_acme_0123456789\n")
    secret.write_text("file-secret-key-0123456789")
    settings = load_settings({"JOBWIRE_API_KEYS_FILE": str(keys), "JOBWIRE_SECRET_KEY_FILE": str(secret)})
    assert settings.tenant_for_key("key_acme_0123456789") == "acme"
    assert settings.secret_key == "file-secret-key-0123456789"
    with pytest.raises(ConfigError, match="not both") as both:
        load_settings({"JOBWIRE_API_KEYS_FILE": str(keys), "JOBWIRE_API_KEYS": "acme:key_acme_0123456789"})
    assert both.value.variable == "JOBWIRE_API_KEYS_FILE" and "key_acme" not in str(both.value)
    with pytest.raises(ConfigError, match="cannot read") as missing:
        load_settings({"KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "nowhere")})
    assert missing.value.variable == "KAFKA_SASL_PASSWORD_FILE"
    secret.write_text("short\n")
    with pytest.raises(ConfigError, match="JOBWIRE_SECRET_KEY"):
        load_settings({"JOBWIRE_SECRET_KEY_FILE": str(secret)})
    keys.write_text("acme:key_acme_0123456789\n\nglobex:key_globex_0123456789\n")  # one entry per line
    both_tenants = load_settings({"JOBWIRE_API_KEYS_FILE": str(keys)})
    assert [tenant for tenant, _ in both_tenants.api_keys] == ["acme", "globex"]
    secret.write_text("file-secret-key-0123456789\nanother-line-0123456789\n")
    with pytest.raises(ConfigError, match="holds 2 lines") as two_lines:
        load_settings({"JOBWIRE_SECRET_KEY_FILE": str(secret)})
    assert "file-secret-key" not in str(two_lines.value)
    with pytest.raises(ConfigError, match="space, a line break"):
        load_settings({"JOBWIRE_API_KEYS": "acme:key acme 0123456789"})
