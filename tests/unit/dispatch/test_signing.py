"""Signing: the Standard Webhooks vector, verification as a customer does it, rotation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from jobwire.dispatch.signing import sign_headers
from jobwire.webhooks.secretbox import SecretBox, binding, new_webhook_secret

SHARED_VECTORS = Path(__file__).parents[4] / "shared" / "webhook-test-vectors.json"
# The published Standard Webhooks vector; shared/ (beside the repo) holds the same one.
PUBLISHED = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": 1614265330, "payload": '{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
VECTORS = json.loads(SHARED_VECTORS.read_text())["vectors"] if SHARED_VECTORS.exists() else [PUBLISHED]


@pytest.mark.parametrize("vector", VECTORS)
def test_published_vector(vector: dict) -> None:  # type: ignore[type-arg]
    at = datetime.fromtimestamp(vector["timestamp"], UTC)
    headers = sign_headers(vector["msg_id"], vector["payload"], [vector["secret"]], at)
    assert headers["webhook-signature"] == vector["signature"]
    assert headers["webhook-timestamp"] == str(vector["timestamp"])
    assert headers["svix-signature"] == headers["webhook-signature"]


def test_receiver_verifies_with_svix() -> None:
    secret = new_webhook_secret()
    body = '{"type": "task.completed", "data": {"id": "job_1"}}'
    headers = sign_headers("msg_1", body, [secret])
    Webhook(secret).verify(body, headers)  # raises WebhookVerificationError when it does not verify


def test_tampered_wrong_secret_and_old_timestamp_fail() -> None:
    secret = new_webhook_secret()
    body = '{"type": "task.completed"}'
    headers = sign_headers("msg_1", body, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("completed", "failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)
    stale = sign_headers("msg_1", body, [secret], datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)


def test_rotation_signs_with_both_secrets() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    body = '{"type": "task.failed"}'
    headers = sign_headers("msg_2", body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)


def test_secret_format_and_sealing() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 32
    box = SecretBox("k" * 32)
    sealed = box.seal(secret, bound_to=binding("acme", "ep_1"))
    assert secret not in sealed and box.open(sealed, bound_to=binding("acme", "ep_1")) == secret
    from jobwire.errors import JobwireError

    with pytest.raises(JobwireError, match="JOBWIRE_SECRET_KEY"):
        SecretBox("x" * 32).open(sealed, bound_to=binding("acme", "ep_1"))


def test_an_ed25519_key_signs_v1a_as_the_spec_defines_it() -> None:
    """``v1a,`` + base64 ed25519 over ``{msg_id}.{timestamp}.{payload}``, verified with the
    ``whpk_`` public key alone, beside a ``v1`` of a shared secret in rotation."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from jobwire.webhooks.keys import new_signing_key, public_key
    from tests.support.receiver import verifies_v1a

    key, shared = new_signing_key(), new_webhook_secret()
    body = '{"type": "task.completed", "data": {"id": "job_1"}}'
    headers = sign_headers("msg_1", body, [key, shared])
    v1a, v1 = headers["webhook-signature"].split(" ")
    assert v1a.startswith("v1a,") and v1.startswith("v1,")
    assert key.startswith("whsk_") and len(base64.b64decode(key[5:])) == 32
    verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key(key).removeprefix("whpk_")))
    verifier.verify(base64.b64decode(v1a[4:]), f"msg_1.{headers['webhook-timestamp']}.{body}".encode())
    assert verifies_v1a(public_key(key), body.encode(), headers)
    assert not verifies_v1a(public_key(new_signing_key()), body.encode(), headers), "another key's public key"
    assert not verifies_v1a(public_key(key), body.encode() + b" ", headers), "a changed body"
    Webhook(shared).verify(body, headers)  # the v1 beside it still verifies with svix
