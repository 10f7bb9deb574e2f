"""A callback URL per job: ``webhook_url`` on submit, as many job APIs take it, so a client
needs no endpoint registered first.

The URL travels with the job (``job.created`` data ``webhook``), so the dispatcher that
finishes the job always knows it, whatever it has read of the endpoints topic. Its deliveries
are ordinary deliveries on a lane of their URL's own (``cb_…``: one slow callback URL holds up
no other), retried and logged
like any other, carrying their URL. They are signed with the tenant's callback secret,
derived from ``JOBWIRE_SECRET_KEY`` (nothing stored; a per-tenant rotation is not offered yet:
rotating the key rotates every tenant's callback secret): the API shows it
(``GET /v1/webhooks/callback-secret``); while ``JOBWIRE_SECRET_KEYS`` lists an older key too,
each request carries a signature by that key's secret as well, so receivers holding either
verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from jobwire.lifecycle import Job
from jobwire.webhooks.model import EVENT_TYPES
from jobwire.webhooks.secretbox import stretched

PREFIX = "cb_"
PURPOSE = b"jobwire callback secret v1\0"


def callback_endpoint_id(tenant: str, url: str) -> str:
    """The lane, and the ``endpoint_id`` of the deliveries, of a tenant's callbacks to ``url``."""
    return PREFIX + hashlib.sha256(f"{tenant}\0{url}".encode()).hexdigest()[:24]


def is_callback(endpoint_id: str) -> bool:
    return endpoint_id.startswith(PREFIX)


def callback_secret(secret_key: str, tenant: str) -> str:
    """The tenant's callback signing secret under one key (a ``whsec_`` secret), from the key's
    scrypt-stretched material: every tenant is shown its own, and none is a cheap test of the key."""
    digest = hmac.new(stretched(secret_key), PURPOSE + tenant.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(digest).decode()


def callback_secrets(secret_keys: str, tenant: str) -> list[str]:
    """The secrets a callback is signed with: the newest key's first, then the older keys'."""
    keys: Sequence[str] = [key.strip() for key in secret_keys.split(",") if key.strip()]
    return [callback_secret(key, tenant) for key in keys]


def wants(job: Job, event_type: str) -> bool:
    """Whether the job's callback takes ``event_type`` (its events; the terminal ones by default)."""
    webhook = job.webhook
    if not webhook:
        return False
    return event_type in (webhook.get("events") or EVENT_TYPES)
