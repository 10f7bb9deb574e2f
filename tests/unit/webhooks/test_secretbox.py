"""Endpoint secrets at rest: bound to their endpoint, rotatable keys, old values still open,
placeholders refused at start."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobwire.config import load_settings
from jobwire.errors import ConfigError
from jobwire.webhooks.secretbox import SecretBox, SecretBoxError, binding, key_id

OLD, NEW = "old-secret-key-0123456789", "new-secret-key-9876543210"
HERE = binding("acme", "ep_1")


def test_a_sealed_secret_opens_only_for_its_own_endpoint() -> None:
    box = SecretBox(NEW)
    sealed = box.seal("whsec_abc", bound_to=HERE)
    assert box.open(sealed, bound_to=HERE) == "whsec_abc"
    for elsewhere in (binding("acme", "ep_2"), binding("globex", "ep_1")):
        with pytest.raises(SecretBoxError, match="another endpoint"):
            box.open(sealed, bound_to=elsewhere)


def test_keys_rotate_the_first_seals_every_one_opens() -> None:
    sealed_old = SecretBox(OLD).seal("whsec_old", bound_to=HERE)
    both = SecretBox(f"{NEW}, {OLD}")
    assert both.open(sealed_old, bound_to=HERE) == "whsec_old"
    sealed_new = both.seal("whsec_new", bound_to=HERE)
    assert both.is_current(sealed_new) and not both.is_current(sealed_old)
    assert key_id(NEW) in sealed_new and NEW not in sealed_new, "a key id, never the key"
    with pytest.raises(SecretBoxError, match=key_id(OLD)):
        SecretBox(NEW).open(sealed_old, bound_to=HERE)  # the old key dropped too early: said plainly


def test_values_sealed_before_binding_open_only_to_be_resealed() -> None:
    """An unbound value could be copied into another endpoint's record and open there: only
    the reseal command (``jobwire secrets rotate``) opens it, to seal it bound."""
    legacy_aead = AESGCM(hashlib.sha256(b"jobwire endpoint secret v1" + OLD.encode()).digest())
    nonce = os.urandom(12)
    legacy = base64.b64encode(nonce + legacy_aead.encrypt(nonce, b"whsec_legacy", b"jobwire endpoint secret v1")).decode()
    box = SecretBox(f"{NEW},{OLD}")
    with pytest.raises(SecretBoxError, match="jobwire secrets rotate"):
        box.open(legacy, bound_to=HERE)
    assert box.open(legacy, bound_to=HERE, unbound_too=True) == "whsec_legacy" and not box.is_current(legacy)
    with pytest.raises(SecretBoxError):
        box.open("not base64 at all!", bound_to=HERE, unbound_too=True)


def test_values_sealed_under_the_sha256_derivation_still_open_bound_and_are_resealed_with_scrypt() -> None:
    """``v2.``: the key derived with one SHA-256, bound to its endpoint. It opens (deployments
    have them) until ``jobwire secrets rotate`` seals it again as ``v3.``."""
    fast = AESGCM(hashlib.sha256(b"jobwire endpoint secret v1" + NEW.encode()).digest())
    nonce = os.urandom(12)
    sealed = fast.encrypt(nonce, b"whsec_v2", b"jobwire endpoint secret v2\0" + HERE.encode())
    v2 = f"v2.{key_id(NEW)}.{base64.b64encode(nonce + sealed).decode()}"
    box = SecretBox(NEW)
    assert box.open(v2, bound_to=HERE) == "whsec_v2" and not box.is_current(v2)
    with pytest.raises(SecretBoxError):
        box.open(v2, bound_to=binding("acme", "ep_other"))
    resealed = box.seal(box.open(v2, bound_to=HERE), bound_to=HERE)
    assert resealed.startswith(f"v3.{key_id(NEW)}.") and box.is_current(resealed)
    raw = base64.b64decode(resealed.split(".")[2])
    with pytest.raises(InvalidTag):  # sealed under the scrypt key, not the SHA-256 one
        fast.decrypt(raw[:12], raw[12:], b"jobwire endpoint secret v2\0" + HERE.encode())


@pytest.mark.parametrize("value", [
    "REPLACE_ME_with_32_or_more_random_characters", "changeme-changeme-changeme", "short", "s" * 32,
    "abababababababababababab", f"{NEW},short", f"{NEW},REPLACE_ME_second_key_0123456789",
])
@pytest.mark.parametrize("name", ["JOBWIRE_SECRET_KEY", "JOBWIRE_SECRET_KEYS"])
def test_placeholders_short_and_low_entropy_keys_are_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_a_keyring_newest_first_wins_over_the_single_key() -> None:
    settings = load_settings({"JOBWIRE_SECRET_KEYS": f"{NEW},{OLD}", "JOBWIRE_SECRET_KEY": OLD})
    assert settings.secret_key == f"{NEW},{OLD}" and SecretBox(settings.secret_key).current == key_id(NEW)
