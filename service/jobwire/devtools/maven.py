"""Java programs for development and tests (the Kafka broker, S3Proxy), fetched once from
Maven Central into a cache outside the repository: ``mvn dependency:copy-dependencies`` on a
small recipe (``deploy/<name>/pom.xml``), under a file lock so that concurrent test sessions
fetch once, with a stamp written last so that an interrupted fetch starts over."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_jars(recipe: Path, lib: Path, what: str, error: type[Exception], *, quiet: bool = False) -> Path:
    """``lib``, holding the runtime jars of ``recipe/pom.xml``; ``error`` names what failed."""
    stamp = lib.parent / "complete"
    if stamp.exists():
        return lib
    with file_lock(lib.parent / "fetch.lock"):
        if stamp.exists():  # another process fetched while we waited
            return lib
        if shutil.which("mvn") is None:
            raise error(f"Maven is needed once to fetch the {what} jars: `mvn` is not on PATH")
        if not quiet:
            print(f"Fetching {what} jars into {lib} (once) ...", file=sys.stderr, flush=True)
        shutil.rmtree(lib, ignore_errors=True)
        # Not quiet: Maven prints a line per artifact it downloads, the progress of this slow step.
        command = [
            "mvn", "-B", *(["-q"] if quiet else []), "-f", str(recipe / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={lib}",
        ]
        done = subprocess.run(command, capture_output=quiet, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout or "")[-2000:] + (done.stderr or "")[-2000:]
            raise error(f"Maven could not fetch the {what} jars (exit {done.returncode}): {tail.strip()}")
        stamp.write_text(what)
    return lib
