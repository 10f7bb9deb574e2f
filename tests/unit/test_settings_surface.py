"""The settings surface stays honest: what the code reads is listed, documented, and all that
deploy files set."""

from __future__ import annotations

import re
from pathlib import Path

from jobwire.config import ENV_VARS

ROOT = Path(__file__).parents[2]
NAME = re.compile(r"""["']((?:JOBWIRE|KAFKA)_[A-Z0-9_]+)["']""")


def test_every_variable_the_code_reads_is_listed() -> None:
    read = {m for path in (ROOT / "service").rglob("*.py") for m in NAME.findall(path.read_text())}
    assert read - set(ENV_VARS) == set(), "read but not in config.ENV_VARS"
    assert set(ENV_VARS) - read == set(), "listed but never read"


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [v for v in ENV_VARS if f"`{v}`" not in readme] == []
