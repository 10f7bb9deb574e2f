"""The import rules of the package layout (docs/architecture.md, "Which way imports go"),
checked on every module's source: a rule broken anywhere fails here with the line at fault.

Imports inside functions count too: they are how a rule would quietly be broken.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "service" / "jobwire"

#: The pure core: stdlib, the codec libraries and each other; no I/O framework.
CORE = {"lifecycle", "clock", "events", "task", "ids", "timeutil", "offsets", "positions", "records", "deadlines",
        "binding", "topics", "validation", "errors", "waits"}
#: Modules kept at the top for code that imports the SDK by its old paths.
SHIMS = {"worker", "client"}
LAYERS = {"kafka", "storage", "webhooks", "api", "dispatch", "sdk", "devtools"}


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        if name:  # jobwire/__init__.py: the version only
            found[name] = path
    return found


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            base = node.module or ""
            found.append((node.lineno, base))
            # `from jobwire import events` imports the module jobwire.events
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if f"{base}.{alias.name}".removeprefix("jobwire.") in modules()]
    return found


def jobwire_part(module: str) -> str | None:
    """The top-level part of the package a module name is in: a layer, a core or top module."""
    if module != "jobwire" and module.startswith("jobwire."):
        return module.split(".")[1]
    return None


def top(module: str) -> str:
    return module.split(".")[0]


def layer_of(name: str) -> str:
    return name.split(".")[0]


def allowed(name: str, imported: str) -> str | None:
    """None when module ``name`` may import ``imported``; else the rule it breaks."""
    layer = layer_of(name)
    part = jobwire_part(imported)
    library = top(imported)
    if library == "tests":
        return "the package never imports the tests"
    if library == "aiokafka" and layer != "kafka":
        return "only jobwire.kafka imports aiokafka"
    if library in ("aiobotocore", "botocore") and layer != "storage":
        return "only jobwire.storage imports the S3 client"
    if library == "aiohttp" and layer not in ("dispatch", "devtools") and name != "sdk.client":
        return "aiohttp is the dispatcher's sender and the client SDK's transport only"
    if library == "opentelemetry" and name != "tracing":
        return "only jobwire.tracing imports OpenTelemetry (an optional extra: off, nothing of it loads)"
    if library in ("starlette", "uvicorn") and layer not in ("api", "devtools", "cli"):
        return "starlette and uvicorn belong to jobwire.api"
    if part is None:
        return None
    if layer in CORE and part in LAYERS | {"cli", "logging_setup"}:
        return "the core imports no layer and no command (settings and metrics are plain data)"
    if layer == "api" and part == "dispatch" or layer == "dispatch" and part == "api":
        return "api and dispatch never import each other; they meet on topics"
    if layer in ("kafka", "webhooks") and part in {"api", "dispatch", "sdk", "devtools", "cli"}:
        return f"jobwire.{layer} is below api and dispatch"
    if layer == "storage" and part in LAYERS - {"storage"} | {"cli"}:
        return "jobwire.storage is an adapter below every service: it imports no other layer"
    if layer == "kafka" and part == "webhooks":
        return "jobwire.kafka knows nothing of webhooks"
    if part == "devtools" and layer not in ("devtools", "cli"):
        return "only the command and the dev tools import jobwire.devtools"
    if part == "cli" and layer != "cli":
        return "nothing imports the command"
    if name == "sdk.client" and imported not in ("jobwire.positions", "jobwire.errors"):
        return "the client SDK imports no server module (jobwire.positions and jobwire.errors only)"
    if layer == "sdk" and part in {"api", "dispatch", "devtools"}:
        return "the SDK imports no service"
    return None


def test_the_layout_has_its_packages() -> None:
    names = set(modules())
    assert LAYERS <= names, LAYERS - names
    flat = {n for n in names if "." not in n}
    assert flat - CORE - SHIMS - LAYERS == {"cli", "config", "metrics", "logging_setup", "tracing"}, \
        "a new top-level module: put it in a layer, or add it to the core on purpose"


def test_no_module_breaks_an_import_rule() -> None:
    broken = []
    for name, path in modules().items():
        if name in SHIMS:
            continue
        for line, imported in imports(path):
            why = allowed(name, imported)
            if why:
                broken.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}: {why}")
    assert broken == []


@pytest.mark.parametrize(("name", "imported"), [
    ("api.jobs", "jobwire.dispatch.policy"),
    ("dispatch.lanes", "jobwire.api.store"),
    ("lifecycle", "jobwire.kafka.readers"),
    ("events", "jobwire.webhooks.model"),
    ("webhooks.registry", "aiokafka"),
    ("webhooks.ssrf", "aiohttp"),
    ("sdk.client", "jobwire.records"),
    ("sdk.client", "jobwire.metrics"),
    ("kafka.readers", "jobwire.webhooks.model"),
    ("api.app", "jobwire.devtools.broker"),
    ("dispatch.http_client", "tests.support.memlog"),
    ("records", "starlette"),
    ("dispatch.deliverer", "opentelemetry.trace"),
])
def test_the_rules_refuse_what_they_name(name: str, imported: str) -> None:
    assert allowed(name, imported) is not None


def test_the_client_sdk_loads_no_server_module() -> None:
    """Not only its own imports: importing it in a fresh interpreter loads none of them."""
    import subprocess
    import sys

    probe = ("import sys, jobwire.sdk.client; "
             "print(sorted(m for m in sys.modules if m.startswith(('aiokafka', 'starlette', 'prometheus_client', "
             "'jobwire.kafka', 'jobwire.api', 'jobwire.dispatch', 'jobwire.metrics', 'jobwire.config'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "[]"


def test_every_exception_of_ours_is_a_jobwire_error() -> None:
    """One tree (errors.py): a caller can catch everything jobwire raises on purpose."""
    import importlib
    import inspect

    from jobwire.errors import JobwireError

    outside = []
    for name in modules():
        module = importlib.import_module(f"jobwire.{name}")
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
                    and not issubclass(value, JobwireError)):
                outside.append(f"jobwire.{name}.{attr}")
    assert outside == []
