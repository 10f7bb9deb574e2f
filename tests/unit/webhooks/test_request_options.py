"""An endpoint's custom headers and auth: sent with each request, sealed at rest, shown by
name and type only, and never one the HTTP exchange or the signature owns."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from jobwire.api.app import create_app
from jobwire.config import load_settings
from jobwire.webhooks.request_options import REFUSED, request_headers, seal_input, violations
from tests.support.memlog import memory_components

KEY = {"X-API-Key": "key_acme_0123456789"}


def test_bearer_and_basic_become_authorization() -> None:
    assert request_headers(seal_input({"X-Tenant": "a"}, {"type": "bearer", "token": "tok"})) == {
        "x-tenant": "a", "authorization": "Bearer tok"}
    basic = request_headers(seal_input(None, {"type": "basic", "username": "u", "password": "p:w"}))
    assert basic == {"authorization": "Basic " + base64.b64encode(b"u:p:w").decode()}
    assert request_headers(None) == {} and seal_input({}, None) is None


@given(st.sampled_from(sorted(REFUSED) + ["webhook-signature", "svix-id", "x-forwarded-for"]), st.randoms())
def test_a_header_the_exchange_owns_is_refused_in_any_case(name: str, rnd: object) -> None:
    mixed = "".join(c.upper() if rnd.random() < 0.5 else c for c in name)  # type: ignore[attr-defined]
    assert [v.pointer for v in violations({mixed: "x"})] == [f"/headers/{mixed}"]
    assert violations({"X-Api-Gateway-Key": "x"}) == []


def test_the_api_seals_them_and_shows_names_and_type_only() -> None:
    parts, _, _ = memory_components()
    with TestClient(create_app(load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_DEV": "1"}),
                               parts)) as client:
        created = client.post("/v1/webhooks/endpoints", headers=KEY, json={
            "url": "https://hooks.example.com/a", "headers": {"X-Gateway-Key": "gw-secret-value"},
            "auth": {"type": "bearer", "token": "bearer-secret-value"}})
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["headers"] == ["X-Gateway-Key"] and endpoint["auth"] == {"type": "bearer"}
        shown = client.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=KEY).text
        assert "gw-secret-value" not in shown and "bearer-secret-value" not in shown
        stored = parts.endpoints.endpoints[endpoint["id"]].encode()
        assert b"gw-secret-value" not in stored and b"bearer-secret-value" not in stored, "sealed at rest"
        patched = client.patch(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=KEY, json={"auth": None}).json()
        assert patched["auth"] is None and patched["headers"] == ["X-Gateway-Key"], "the headers stay"
        for bad in ({"Host": "evil.example"}, {"webhook-signature": "v1,x"}, {"Authorization": "Bearer x"},
                    {"Content-Length": "0"}):
            refused = client.post("/v1/webhooks/endpoints", headers=KEY, json={"url": "https://hooks.example.com/b",
                                                                               "headers": bad})
            assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == f"/headers/{next(iter(bad))}"
        for bad_value in ({"X-A": "line\r\nInjected: 1"}, {"X A": "v"}):
            assert client.post("/v1/webhooks/endpoints", headers=KEY, json={
                "url": "https://hooks.example.com/c", "headers": bad_value}).status_code == 422
        assert client.post("/v1/webhooks/endpoints", headers=KEY, json={
            "url": "https://hooks.example.com/d", "auth": {"type": "basic", "username": "a:b", "password": "p"}}
        ).status_code == 422, "a basic user name holds no colon"


def test_the_largest_endpoint_body_the_schema_allows_fits_the_body_limit() -> None:
    """Every field at its longest, every character sent as a JSON escape of a surrogate pair
    (12 bytes): still under the 1 MiB body limit, so a valid body is never answered 413."""
    from jobwire.config import Settings
    from jobwire.validation import load_schema

    props = load_schema("api/endpoint-create.json")["properties"]
    cert = props["tls_client_cert"]["oneOf"][1]["properties"]
    condition = props["filter"]["additionalProperties"]["anyOf"]
    value = condition[0]["anyOf"][0]["maxLength"]
    listed = condition[1]["properties"]["in"]["maxItems"] * value
    characters = props["url"]["maxLength"] + props["description"]["maxLength"]
    characters += props["tls_ca"]["maxLength"] + cert["cert"]["maxLength"] + cert["key"]["maxLength"]
    characters += props["headers"]["maxProperties"] * (64 + props["headers"]["additionalProperties"]["maxLength"])
    characters += props["filter"]["maxProperties"] * (len("metadata.") + 64 + max(value, listed))
    assert characters * 12 + 16 * 1024 < Settings.__dataclass_fields__["max_body_bytes"].default
