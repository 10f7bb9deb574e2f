"""Liveness, readiness, metrics, the OpenAPI and AsyncAPI documents and an offline docs page."""

from __future__ import annotations

import posixpath
import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from jobwire.api.headers import header
from jobwire.api.problems import Problem
from jobwire.api.responses import json_response
from jobwire.api.routing import path_template
from jobwire.config import Settings
from jobwire.metrics import exposition, scrape_refusal
from jobwire.validation import load_schema, schema_dir


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready once the projections have applied the logs up to their ends seen at start-up."""
    behind = dict(request.state.readiness())
    if behind:
        progress = behind.pop("progress", None)
        return json_response({"status": "catching up", "behind": behind, "progress": progress}, 503,
                             {"Retry-After": "1"})
    return json_response({"status": "ready"})  # no counts: anyone can ask


async def metrics(request: Request) -> Response:
    """Prometheus metrics, which span every tenant: only with JOBWIRE_METRICS_TOKEN as a bearer
    token (a tenant's API key is not enough); open without one in dev mode only."""
    settings: Settings = request.state.settings
    refusal = scrape_refusal(settings.metrics_token, settings.dev, header(request, b"authorization"))
    if refusal is not None:
        raise Problem(401, refusal, headers={"WWW-Authenticate": 'Bearer realm="jobwire metrics"'})
    body, content_type = exposition(request.state.metrics_registry, header(request, b"accept"))
    return Response(body, headers={"Content-Type": content_type})


@cache
def openapi_document(profiles: tuple[str, ...] = (), root_profile: str | None = None) -> bytes:
    """The API's OpenAPI document, with the paths of the wire profiles mounted."""
    spec: dict[str, Any] = yaml.safe_load((schema_dir() / "openapi.yaml").read_text())
    if profiles or root_profile:
        from jobwire.api.profiles.model import load_profile
        from jobwire.api.profiles.openapi import profile_paths

        root = load_profile(root_profile) if root_profile else None
        paths = profile_paths(tuple(load_profile(name) for name in profiles), root,
                              spec["paths"]["/v1/jobs:batch"]["post"]["requestBody"])
        _merge_paths(spec["paths"], paths)
    return bundle(spec)


def _merge_paths(paths: dict[str, Any], added: dict[str, Any]) -> None:
    """Add ``added`` operation by operation. One on a template jobwire has already (a dialect
    at the root answering instead, whatever its parameters are called) replaces jobwire's
    operation of that method under jobwire's template, its path parameters renamed to match."""
    by_template = {path_template(path): path for path in paths}
    for path, item in added.items():
        existing = by_template.setdefault(path_template(path), path)
        rename = dict(zip(re.findall(r"\{([^}]+)\}", path), re.findall(r"\{([^}]+)\}", existing), strict=True))
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path":
                    parameter["name"] = rename.get(parameter["name"], parameter["name"])
            paths.setdefault(existing, {})[method] = operation


def asyncapi_document() -> bytes:
    return bundled_document("asyncapi.yaml")


@cache
def bundled_document(name: str) -> bytes:
    return bundle(yaml.safe_load((schema_dir() / name).read_text()))


def bundle(spec: dict[str, Any]) -> bytes:
    """An OpenAPI or AsyncAPI document with every $ref to a schema file moved under
    components/schemas, so the served document is self-contained and the JSON Schemas in
    schemas/ stay the single source. A relative $ref inside a schema file is read relative to
    that file, as JSON Schema resolves it against the file's $id."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})

    def component_name(relative: str) -> str:
        stem = relative.removesuffix(".json").replace("/", "-").replace(".", "-")
        return "".join(part.capitalize() for part in stem.replace("_", "-").split("-"))

    def inline(node: Any, base: PurePosixPath) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                relative = posixpath.normpath(str(base / ref))
                component = component_name(relative)
                if component not in components:
                    components[component] = {}  # placeholder first: guards against cycles
                    schema = {k: v for k, v in load_schema(relative).items() if k not in ("$schema", "$id")}
                    components[component] = inline(schema, PurePosixPath(relative).parent)
                return {"$ref": f"#/components/schemas/{component}"}
            return {key: inline(value, base) for key, value in list(node.items())}
        if isinstance(node, list):
            return [inline(item, base) for item in node]
        return node

    root = PurePosixPath()
    for key in [k for k in spec if k != "components"]:
        spec[key] = inline(spec[key], root)
    for section in [k for k in spec["components"] if k != "schemas"]:
        spec["components"][section] = inline(spec["components"][section], root)
    for component in list(components):
        components[component] = inline(components[component], root)
    return orjson.dumps(spec)


async def openapi(request: Request) -> Response:
    mounted: tuple[tuple[str, ...], str | None] = request.state.profiles_mounted
    return Response(openapi_document(*mounted), media_type="application/json")


async def asyncapi(request: Request) -> Response:
    return Response(asyncapi_document(), media_type="application/json")


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jobwire API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1d232a}
h1{margin-bottom:.2rem} .op{border:1px solid #d6dde4;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#1a7f37}.post{color:#0b5cad}.patch{color:#8250df}.delete{color:#c62828}
code,pre{font:13px ui-monospace,monospace;background:#f4f6f8;border-radius:4px;padding:.1rem .3rem}
pre{padding:.6rem;overflow:auto} details summary{cursor:pointer}
</style></head><body>
<h1>jobwire API</h1><p id="info">Loading <a href="/openapi.json">/openapi.json</a> ...</p><div id="ops"></div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  document.getElementById('info').textContent = spec.info.title + ' ' + spec.info.version + ' - ' + (spec.info.description || '');
  const ops = document.getElementById('ops');
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get','post','put','patch','delete'].includes(method)) continue;
      const box = document.createElement('div'); box.className = 'op';
      const head = document.createElement('div');
      head.innerHTML = '<span class="m ' + method + '"></span> <code></code> ';
      head.querySelector('.m').textContent = method; head.querySelector('code').textContent = path;
      head.append(document.createTextNode(op.summary || ''));
      const more = document.createElement('details'); const sum = document.createElement('summary');
      sum.textContent = 'details'; const pre = document.createElement('pre');
      pre.textContent = JSON.stringify({parameters: op.parameters, requestBody: op.requestBody, responses: op.responses}, null, 2);
      more.append(sum, pre); box.append(head, more); ops.append(box);
    }
  }
});
</script></body></html>"""


async def docs(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)


@cache
def portal_page() -> str:
    return Path(__file__).with_name("portal.html").read_text()


@cache
def portal_script() -> bytes:
    return Path(__file__).with_name("portal.js").read_bytes()


#: The portal runs only its own script file: no inline script, no other origin.
PORTAL_CSP = ("default-src 'self'; script-src 'self'; style-src 'unsafe-inline' 'self'; img-src 'self' data:; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


async def portal(request: Request) -> Response:
    """The portal: plain HTML and JavaScript, no CDN; an API key stays in the tab, a portal
    link's session in an HttpOnly cookie."""
    return HTMLResponse(portal_page(), headers={"Content-Security-Policy": PORTAL_CSP, "Cache-Control": "no-store"})


async def portal_js(request: Request) -> Response:
    return Response(portal_script(), media_type="text/javascript",
                    headers={"Content-Security-Policy": PORTAL_CSP, "Cache-Control": "no-cache"})
