"""Webhook endpoint management and the delivery log. Changes are records on topics that the
dispatcher consumes; the API never calls the dispatcher."""

from __future__ import annotations

import html
import logging
import math
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobwire.api.auth import is_portal_session, tenant_of, webhook_tenant_of
from jobwire.api.bodies import read_json
from jobwire.api.deliverylog import REPLAYABLE, DeliveryLog
from jobwire.api.limits import ApiLimits
from jobwire.api.portal_links import COOKIE, SESSION_TTL_S, LinkClaims, LinkRefused, PortalLinks
from jobwire.api.problems import Problem, log_unavailable
from jobwire.api.resends import RecentResends
from jobwire.api.responses import json_response, require_json
from jobwire.errors import LogError, Violation
from jobwire.ids import new_id
from jobwire.positions import Position
from jobwire.timeutil import bound_utc, format_utc, now_utc
from jobwire.webhooks.callbacks import callback_secrets
from jobwire.webhooks.keys import ED25519, HMAC, is_signing_key, new_signing_key, public_key
from jobwire.webhooks.model import (
    TEST_EVENT_TYPE,
    Delivery,
    Endpoint,
    SealedSecret,
    operational_deliveries,
    payload,
    webhook_id,
)
from jobwire.webhooks.redemptions import MAX_REDEEMED_PER_TENANT, Redemption
from jobwire.webhooks.registry import EndpointRegistry
from jobwire.webhooks.request_options import client_cert_of, opened, seal_input
from jobwire.webhooks.request_options import violations as header_violations
from jobwire.webhooks.secretbox import SecretBox, SecretBoxError, binding, new_webhook_secret
from jobwire.webhooks.ssrf import TargetRefused, check_target_url
from jobwire.webhooks.tls import ClientCert, ca_bundle, client_cert

WRITE_VISIBLE_TIMEOUT_S = 5.0
DEFAULT_GRACE_S = 24 * 3600

log = logging.getLogger(__name__)


def registry_of(request: Request) -> EndpointRegistry:
    registry: EndpointRegistry = request.state.endpoints
    return registry


def box_of(request: Request) -> SecretBox:
    box: SecretBox | None = request.state.secret_box
    if box is None:
        raise Problem(503, "webhooks are not configured: set JOBWIRE_SECRET_KEYS")
    return box


def check_url(request: Request, url: str, pointer: str = "/url", what: str = "the endpoint URL") -> None:
    """422 naming ``pointer`` unless ``url`` is one webhooks may go to (SSRF policy, https
    outside dev mode, no credentials)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise Problem(422, f"{what} is not allowed",
                      violations=[Violation(pointer, f"is not a valid URL: {exc}")]) from None
    problems = []
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problems.append("must be an absolute http(s) URL")
    elif parts.scheme == "http" and not request.state.settings.dev:
        problems.append("must use https (http is allowed in dev mode only)")
    if parts.username or parts.password:
        problems.append("must not carry credentials")
    if parts.hostname:
        try:
            check_target_url(url, request.state.settings.allowed_targets)
        except TargetRefused as exc:
            problems.append(str(exc))
    if problems:
        raise Problem(422, f"{what} is not allowed", violations=[Violation(pointer, p) for p in problems])


async def write_endpoint(request: Request, endpoint: Endpoint | None, endpoint_id: str) -> None:
    writer = request.state.endpoint_writer
    try:
        position: Position = await (writer.put(endpoint) if endpoint else writer.delete(endpoint_id))
    except LogError as exc:
        raise log_unavailable(exc, f"endpoint endpoint_id={endpoint_id}") from None
    if not await registry_of(request).positions.wait_for(position, WRITE_VISIBLE_TIMEOUT_S):
        raise Problem(503, "written but not visible yet; retry", headers={"Retry-After": "1"})


def found(request: Request, tenant: str) -> Endpoint:
    endpoint = registry_of(request).get(tenant, request.path_params["endpoint_id"])
    if endpoint is None:
        raise Problem(404, f"no endpoint {request.path_params['endpoint_id']}")
    return endpoint


def event_types(value: list[str] | None) -> tuple[str, ...] | None:
    return tuple(value) if value is not None else None


async def create_endpoint(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    body = await read_json(request, "api/endpoint-create.json")
    check_url(request, body["url"])
    quota = request.state.settings.endpoints_per_tenant
    if len(registry_of(request).of_tenant(tenant)) >= quota:
        raise Problem(422, f"this tenant has {quota} webhook endpoints, the most it may have; delete one first",
                      extra={"quota": "endpoints_per_tenant", "limit": quota})
    signing = SIGNING_NAMES.get(body.get("signing", HMAC), body.get("signing", HMAC))
    secret = new_signing_key() if signing == ED25519 else new_webhook_secret()
    now = now_utc()
    endpoint_id = new_id("ep")
    options = request_options(request, tenant, endpoint_id, body.get("headers"), body.get("auth"),
                              body.get("tls_client_cert"))
    options.update(checked_ca(body))
    endpoint = Endpoint(
        id=endpoint_id, tenant=tenant, url=body["url"], created_at=now, updated_at=now,
        secrets=(SealedSecret(box_of(request).seal(secret, bound_to=binding(tenant, endpoint_id))),),
        event_types=event_types(body.get("event_types")),
        description=body.get("description"), disabled=body.get("disabled", False),
        rate_limit_per_s=body.get("rate_limit_per_s"), signing=signing, filter=body.get("filter"),
        ordering=ordering_of(body.get("ordering")), **options,
    )
    await write_endpoint(request, endpoint, endpoint.id)
    return json_response({**endpoint.public(), **shown_once(secret)}, 201,
                         {"Location": f"/v1/webhooks/endpoints/{endpoint.id}"})


#: The scheme names DESIGN.md gives (Standard Webhooks' signature versions), as aliases.
SIGNING_NAMES = {"v1": HMAC, "v1a": ED25519}


def ordering_of(value: str | None) -> str | None:
    """``job``; ``none`` (the default) is stored as no value, as before the option existed."""
    return None if value in (None, "none") else value


#: Fields of a PATCH that go sealed into ``sealed_request``.
SEALED_FIELDS = frozenset({"headers", "auth", "tls_client_cert"})


def request_options(request: Request, tenant: str, endpoint_id: str, headers: dict[str, str] | None,
                    auth: dict[str, Any] | None, cert: dict[str, str] | None,
                    kept: Endpoint | None = None) -> dict[str, Any]:
    """The endpoint fields for its custom headers, auth and client certificate: sealed, with
    the header names, the auth type and the certificate's subject and expiry in clear. A
    certificate ``kept`` from the endpoint as it was is not checked again (an expired one does
    not stop a change of headers)."""
    refused = header_violations(headers)
    described = ClientCert(kept.tls_client_subject, kept.tls_client_not_after or "") \
        if kept is not None and cert and kept.tls_client_subject else None
    if cert and described is None:
        described, wrong = client_cert(cert["cert"], cert["key"], datetime.now(UTC))
        refused += wrong
    if refused:
        raise Problem(422, "the endpoint's request options are not valid", violations=refused)
    plaintext = seal_input(headers, auth, cert)
    return {
        "sealed_request": box_of(request).seal(plaintext, bound_to=binding(tenant, endpoint_id)) if plaintext else None,
        "header_names": tuple(sorted(headers)) if headers else None,
        "auth_type": auth["type"] if auth else None,
        "tls_client_subject": described.subject if described else None,
        "tls_client_not_after": described.not_after if described else None,
    }


def checked_ca(body: dict[str, Any]) -> dict[str, Any]:
    if "tls_ca" not in body:
        return {}
    if body["tls_ca"] is not None and (wrong := ca_bundle(body["tls_ca"])):
        raise Problem(422, "the endpoint's CA bundle is not valid", violations=wrong)
    return {"tls_ca": body["tls_ca"]}


def shown_once(secret: str) -> dict[str, str]:
    """What a create or a rotation shows of the new secret: a shared secret itself, once; of an
    ed25519 signing key only its public key (the private key never leaves the service)."""
    return {"public_key": public_key(secret)} if is_signing_key(secret) else {"secret": secret}


async def endpoint_public_keys(request: Request) -> Response:
    """The public keys an ed25519 endpoint's webhooks are signed with: the current one, and those
    rotated out and still signing in their grace period (with when they stop)."""
    tenant = webhook_tenant_of(request)
    require_json(request)
    endpoint = found(request, tenant)
    if endpoint.signing != ED25519:
        raise Problem(409, f"endpoint {endpoint.id} signs with a shared secret (signing: {endpoint.signing}); "
                      "it has no public key")
    current = now_utc()
    bound_to = binding(tenant, endpoint.id)
    try:
        keys = [{"public_key": public_key(box_of(request).open(s.sealed, bound_to=bound_to)),
                 "expires_at": s.expires_at} for s in endpoint.secrets if s.expires_at is None or s.expires_at > current]
    except SecretBoxError as exc:
        log.error("signing key unopenable endpoint_id=%s: %s", endpoint.id, exc)
        raise Problem(503, "the endpoint's signing key cannot be opened on this server; ask its operator "
                      "(JOBWIRE_SECRET_KEYS)", headers={"Retry-After": "60"}) from None
    return json_response({"object": "public_keys", "endpoint_id": endpoint.id, "data": keys})


async def list_endpoints(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    return json_response({"object": "list", "data": [e.public() for e in registry_of(request).of_tenant(tenant)]})


async def get_endpoint(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    return json_response(found(request, tenant).public())


async def patch_endpoint(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    endpoint = found(request, tenant)
    body = await read_json(request, "api/endpoint-patch.json")
    if "url" in body:
        check_url(request, body["url"])
    changes: dict[str, Any] = {k: v for k, v in body.items() if k not in SEALED_FIELDS | {"event_types"}}
    if "event_types" in body:
        changes["event_types"] = event_types(body["event_types"])
    if "ordering" in body:
        changes["ordering"] = ordering_of(body["ordering"])
    if SEALED_FIELDS & set(body):
        # Each replaces what was set (null removes it); the others stay as they were.
        plaintext = box_of(request).open(endpoint.sealed_request, bound_to=binding(tenant, endpoint.id)) \
            if endpoint.sealed_request else None
        old_headers, old_auth = opened(plaintext) if plaintext else ({}, None)
        changes.update(request_options(request, tenant, endpoint.id, body.get("headers", old_headers),
                                       body.get("auth", old_auth),
                                       body.get("tls_client_cert", client_cert_of(plaintext)),
                                       kept=None if "tls_client_cert" in body else endpoint))
    changes.update(checked_ca(body))
    if body.get("disabled") is False:
        changes["disabled_reason"] = None
    elif body.get("disabled") is True:
        changes["disabled_reason"] = "disabled by the API"
    updated = endpoint.with_changes(**changes, updated_at=now_utc())
    await write_endpoint(request, updated, updated.id)
    if updated.disabled != endpoint.disabled:
        # Other endpoints of the tenant that asked for it hear of the change; the endpoint
        # itself only of being enabled (never while disabled).
        event_type = "endpoint.disabled" if updated.disabled else "endpoint.enabled"
        data: dict[str, Any] = {"endpoint_id": updated.id, "url": updated.url}
        data.update({"reason": updated.disabled_reason, "disabled_at": updated.updated_at} if updated.disabled
                    else {"enabled_at": updated.updated_at})
        others = [e for e in registry_of(request).endpoints.values() if e.id != updated.id]
        await enqueue(request, operational_deliveries([*others, updated], tenant, event_type, data, about=updated.id,
                                                      occurrence=updated.updated_at, at=updated.updated_at))
    return json_response(updated.public())


async def delete_endpoint(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    endpoint = found(request, tenant)
    await write_endpoint(request, None, endpoint.id)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    endpoint = found(request, tenant)
    grace_s = DEFAULT_GRACE_S
    if request.headers.get("content-length", "0") != "0":
        grace_s = (await read_json(request, "api/rotate-secret.json")).get("grace_period_s", DEFAULT_GRACE_S)
    now = datetime.now(UTC)
    expires = format_utc(now + timedelta(seconds=grace_s))
    current = format_utc(now)
    # The old current secret keeps signing until `expires`; already-expired ones are dropped.
    kept = tuple(
        SealedSecret(s.sealed, s.expires_at or expires) for s in endpoint.secrets
        if (s.expires_at is None or s.expires_at > current) and grace_s > 0
    )
    quota = request.state.settings.secrets_per_endpoint
    if 1 + len(kept) > quota:
        # Each rotation keeps the old secret for its grace period: unlimited, they would pile up.
        soonest = min(s.expires_at for s in endpoint.secrets if s.expires_at is not None and s.expires_at > current)
        wait_s = max(1, math.ceil((datetime.fromisoformat(soonest) - now).total_seconds()))
        raise Problem(429, f"the endpoint holds {quota} live signing secrets, the most it may; the oldest expires at "
                      f"{soonest}, or rotate with grace_period_s 0 to drop the old ones",
                      headers={"Retry-After": str(wait_s)},
                      extra={"quota": "secrets_per_endpoint", "limit": quota})
    secret = new_signing_key() if endpoint.signing == ED25519 else new_webhook_secret()
    sealed = box_of(request).seal(secret, bound_to=binding(tenant, endpoint.id))
    updated = endpoint.with_changes(secrets=(SealedSecret(sealed), *kept), updated_at=format_utc(now))
    await write_endpoint(request, updated, updated.id)
    return json_response({**updated.public(), **shown_once(secret)})


async def enqueue(request: Request, deliveries: list[Delivery]) -> None:
    try:
        for delivery in deliveries:
            await request.state.delivery_requests.send(delivery.endpoint_id, delivery.encode())
    except LogError as exc:
        raise log_unavailable(exc, "delivery request") from None


async def test_endpoint(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    endpoint = found(request, tenant)
    limits_of(request).resend(tenant)
    now = now_utc()
    event_id = new_id("evt")
    body = payload(TEST_EVENT_TYPE, now, {"endpoint_id": endpoint.id, "message": "a test event from jobwire"})
    delivery = Delivery(webhook_id(event_id, endpoint.id), endpoint.id, tenant, TEST_EVENT_TYPE, event_id, None,
                        body, now)
    await enqueue(request, [delivery])
    return json_response({"object": "webhook_delivery", "id": delivery.id, "status": "pending"}, 202)


def log_of(request: Request) -> DeliveryLog:
    deliveries: DeliveryLog = request.state.deliveries
    return deliveries


async def list_deliveries(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    endpoint = found(request, tenant)
    limit, before = page_query(request)
    views, next_position = log_of(request).of_endpoint(endpoint.id, request.query_params.get("status"), limit,
                                                       before=before)
    return delivery_page(request, views, next_position)


async def job_deliveries(request: Request) -> Response:
    """A job's deliveries: to the tenant's endpoints, and to the job's own callback."""
    tenant = tenant_of(request)
    require_json(request)
    job_id = request.path_params["job_id"]
    if request.state.projection.get(tenant, job_id) is None:
        raise Problem(404, f"no job {job_id}")
    limit, before = page_query(request)
    views, next_position = log_of(request).of_job(tenant, job_id, limit, before=before)
    return delivery_page(request, views, next_position)


def page_query(request: Request) -> tuple[int, int | None]:
    limit_text = request.query_params.get("limit", "50")
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= 200:
        raise Problem(422, "limit must be 1 to 200", violations=[Violation("/query/limit", "must be an integer from 1 to 200")])
    cursor = request.query_params.get("cursor")
    if cursor is not None and not (cursor.startswith("d") and cursor[1:].isascii() and cursor[1:].isdigit()
                                   and len(cursor) <= 16):
        raise Problem(422, "the cursor is not one this API returned",
                      violations=[Violation("/query/cursor", "invalid cursor")])
    return int(limit_text), int(cursor[1:]) if cursor is not None else None


def delivery_page(request: Request, views: list[Any], next_position: int | None) -> Response:
    bodies = not is_portal_session(request)
    return json_response({"object": "list", "data": [v.public(with_bodies=bodies) for v in views],
                          "has_more": next_position is not None,
                          "next_cursor": f"d{next_position}" if next_position is not None else None})


async def callback_secret(request: Request) -> Response:
    """The secret a tenant's job callbacks (``webhook_url``) are signed with; API key only."""
    tenant = tenant_of(request)
    require_json(request)
    keys: str | None = request.state.settings.secret_key
    if not keys:
        raise Problem(503, "job callbacks need JOBWIRE_SECRET_KEY")
    current, *older = callback_secrets(keys, tenant)
    return json_response({"secret": current, "previous": older})


async def get_delivery(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    view = log_of(request).get(tenant, request.path_params["delivery_id"])
    if view is None:
        raise Problem(404, f"no delivery {request.path_params['delivery_id']}")
    return json_response(view.public(with_bodies=not is_portal_session(request)))


def replay(delivery: Delivery) -> Delivery:
    """A failed delivery sent again: same webhook-id and body, a fresh attempt schedule."""
    return replace(delivery, attempts=0, due_at_ms=0, not_before_ms=0, previous_attempts=delivery.previous_attempts + delivery.attempts)


async def retry_delivery(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    deliveries = log_of(request)
    view = deliveries.get(tenant, request.path_params["delivery_id"])
    if view is None:
        raise Problem(404, f"no delivery {request.path_params['delivery_id']}")
    dead = deliveries.dead.get(view.id)
    if view.status not in REPLAYABLE or dead is None:
        raise Problem(409, f"delivery {view.id} is {view.status}; only failed or skipped deliveries are retried")
    # The allowance first: a retry refused with 429 must not leave the delivery claimed, or
    # asking again would answer 409 for a delivery nobody sent.
    limits_of(request).resend(tenant)
    if not resends_of(request).claim(view.id):
        raise Problem(409, f"delivery {view.id} was already asked for again; its attempt is on its way",
                      headers={"Retry-After": "5"})
    await enqueue(request, [replay(dead)])
    return json_response({**view.public(with_attempts=False), "status": "pending"}, 202)


async def recover(request: Request) -> Response:
    tenant = webhook_tenant_of(request)
    require_json(request)
    endpoint = found(request, tenant)
    body = await read_json(request, "api/recover.json")
    try:
        since = bound_utc(body["since"])
    except ValueError as exc:  # the schema checks the shape; month 13 gets this far
        raise Problem(422, "since must be a real RFC 3339 time", violations=[Violation("/since", str(exc))]) from None
    limits_of(request).resend(tenant)
    deliveries = log_of(request)
    chosen, more = recoverable(deliveries, resends_of(request), endpoint.id, since)
    sent: list[str] = []
    # Payloads (up to 512 KiB each) are read and written a few at a time, not held together.
    for start in range(0, len(chosen), RECOVER_CHUNK):
        dead = [d for d in map(deliveries.dead.get, chosen[start:start + RECOVER_CHUNK]) if d is not None]
        await enqueue(request, [replay(delivery) for delivery in dead])
        sent.extend(delivery.id for delivery in dead)  # one removed past retention meanwhile is not
    return json_response({"object": "recovery", "endpoint_id": endpoint.id, "since": since,
                          "deliveries": sent, "more": more}, 202)


#: Deliveries one recover call sends again at most; ``more`` says when there were others.
MAX_RECOVER = 200
#: Replayable deliveries one recover call looks at, at most: those already asked for again
#: are passed over, so the next call reaches the ones after them.
MAX_RECOVER_SCAN = 10 * MAX_RECOVER
#: Payloads a recover holds at once.
RECOVER_CHUNK = 20


def recoverable(deliveries: DeliveryLog, resends: RecentResends, endpoint_id: str,
                since: str) -> tuple[list[str], bool]:
    """Ids of up to MAX_RECOVER of the endpoint's dead deliveries since ``since`` not already
    asked for again (each now claimed), and whether others remain."""
    chosen: list[str] = []
    after, scanned = 0, 0
    while scanned < MAX_RECOVER_SCAN:
        page = deliveries.replayable(endpoint_id, since, after=after, limit=MAX_RECOVER)
        for after, delivery_id in page:
            scanned += 1
            if resends.claim(delivery_id):
                chosen.append(delivery_id)
                if len(chosen) == MAX_RECOVER:
                    return chosen, bool(deliveries.replayable(endpoint_id, since, after=after, limit=1))
        if len(page) < MAX_RECOVER:
            return chosen, False
    return chosen, True


def limits_of(request: Request) -> ApiLimits:
    limits: ApiLimits = request.state.limits
    return limits


def resends_of(request: Request) -> RecentResends:
    resends: RecentResends = request.state.resends
    return resends


#: How the health chart groups attempt outcomes.
HEALTH_GROUPS = {"succeeded": "succeeded", "retrying": "retrying", "failed": "failed", "disabled": "failed",
                 "skipped": "failed", "dropped": "failed"}


async def endpoint_health(request: Request) -> Response:
    """Attempts per hour over the last 24 hours: succeeded, retrying, failed (for the portal)."""
    tenant = webhook_tenant_of(request)
    require_json(request)
    endpoint = found(request, tenant)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=back) for back in range(23, -1, -1)]
    counts = log_of(request).health(endpoint.id, format_utc(hours[0]))
    buckets = []
    for hour in hours:
        key = format_utc(hour)[:13]
        bucket = {"hour": format_utc(hour), "succeeded": 0, "retrying": 0, "failed": 0}
        for outcome, group in HEALTH_GROUPS.items():
            bucket[group] += counts.get((key, outcome), 0)  # type: ignore[operator]
        buckets.append(bucket)
    return json_response({"object": "endpoint_health", "endpoint_id": endpoint.id, "hours": buckets})


async def create_portal_link(request: Request) -> Response:
    """A one-time link that opens the webhook portal signed in for the caller's tenant."""
    tenant = tenant_of(request)  # an API key: a portal session cannot mint more links
    require_json(request)
    links: PortalLinks | None = request.state.portal_links
    if links is None:
        raise Problem(503, "portal links need JOBWIRE_SECRET_KEY on the API")
    token, expires = links.mint(tenant)
    public_url = request.state.settings.public_url
    login = request.url_for("portal_login").include_query_params(token=token)
    # The origin users reach us at, from configuration: never from the request's Host header,
    # which a client chooses.
    url = f"{public_url}{login.path}?{login.query}" if public_url else str(login)
    log.info("portal link issued tenant=%s", tenant)
    return json_response({"object": "portal_link", "url": url,
                          "expires_at": format_utc(datetime.fromtimestamp(expires, UTC))}, 201)


LOGIN_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>jobwire portal</title>
<meta name="referrer" content="no-referrer"><form method="post" action="/portal/login">
<input type="hidden" name="token" value="{token}"><p>Open the webhook portal. This link works once.</p>
<button type="submit">Open the portal</button></form></html>"""
#: A login form's body: the token and little else.
MAX_LOGIN_FORM_BYTES = 4096


async def redeem(request: Request, link: LinkClaims) -> LinkClaims:
    """Spend the link, once across every replica: write a claim on its nonce and read the log
    back; the first claim in the log wins. Raises LinkRefused when it was spent already."""
    redemptions = registry_of(request).redemptions
    if redemptions.winner(link.tenant, link.nonce) is not None:
        raise LinkRefused("the link was used already; ask for a new one")
    if redemptions.count(link.tenant) >= MAX_REDEEMED_PER_TENANT:
        raise LinkRefused("too many portal links redeemed recently for this account; try again in a few minutes")
    mine = Redemption(link.tenant, link.nonce, secrets.token_urlsafe(12), link.expires)
    try:
        position = await request.state.endpoint_writer.redeem(mine)
    except LogError as exc:
        log.warning("portal link not redeemed tenant=%s reason=%s", link.tenant, exc)
        raise LinkRefused("the service cannot record the sign-in right now; try the link again in a minute") from None
    if not await registry_of(request).positions.wait_for(position, WRITE_VISIBLE_TIMEOUT_S):
        raise LinkRefused("the sign-in is taking too long; ask for a new link")
    winner = redemptions.winner(link.tenant, link.nonce)
    if winner is None or winner.claim != mine.claim:
        raise LinkRefused("the link was used already; ask for a new one")
    return link


#: Tombstones one sign-in writes for redemptions whose links have expired.
FORGET_PER_LOGIN = 100


async def forget_expired_redemptions(request: Request) -> None:
    """After a sign-in: tombstones for expired redemptions, so the compacted topic forgets them
    (every replica knows them; whichever signs someone in next writes them)."""
    writer = request.state.endpoint_writer
    try:
        for key in registry_of(request).redemptions.stale(FORGET_PER_LOGIN):
            await writer.forget_redemption(key)
    except LogError as exc:
        log.info("expired portal redemptions not forgotten yet reason=%s", exc)


async def portal_login(request: Request) -> Response:
    """GET shows the link as a page whose button POSTs it (a link scanner that fetches the URL
    spends nothing); the POST exchanges it, once, for a session cookie, then on to the portal."""
    no_store = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    if request.method == "GET":
        token = request.query_params.get("token", "")
        return HTMLResponse(LOGIN_PAGE.format(token=html.escape(token, quote=True)), headers=no_store)
    body = b""
    async for chunk in request.stream():  # unauthenticated: read no more than a form can hold
        body += chunk
        if len(body) > MAX_LOGIN_FORM_BYTES:
            return HTMLResponse("<!doctype html><title>jobwire portal</title><p>The form is too large.</p>",
                                status_code=413, headers=no_store)
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    token = (form.get("token") or [""])[0]
    links: PortalLinks | None = request.state.portal_links
    try:
        if links is None:
            raise LinkRefused("portal links are not enabled on this server")
        link = await redeem(request, links.open_link(token))
    except LinkRefused as refused:
        return HTMLResponse(f"<!doctype html><title>jobwire portal</title><p>{html.escape(str(refused))}.</p>",
                            status_code=403, headers=no_store)
    tenant, session = link.tenant, links.session_for(link)
    log.info("portal link redeemed tenant=%s", tenant)
    response = RedirectResponse("/portal", status_code=303, headers=no_store,
                                background=BackgroundTask(forget_expired_redemptions, request))
    public_url = request.state.settings.public_url
    secure = request.url.scheme == "https" or (public_url or "").startswith("https:")
    response.set_cookie(COOKIE, session, max_age=int(SESSION_TTL_S), path="/", httponly=True, samesite="strict",
                        secure=secure)
    return response
