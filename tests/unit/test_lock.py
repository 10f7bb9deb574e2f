"""The lock files in requirements/ agree with pyproject.toml and with each other.

`make install`, CI and the Dockerfile install only from these files with --require-hashes,
so a dependency added to pyproject.toml without `make lock` would fail there; this names the
gap in the unit run instead, before anything is installed.
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[2]
LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def pins(name: str) -> dict[str, tuple[Version, int]]:
    """Package -> (version, number of hashes) for one lock file."""
    found: dict[str, tuple[Version, int]] = {}
    current = None
    for line in (LOCKS / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            assert current not in found, f"{name}: {current} pinned twice"
            found[current] = (Version(match[2]), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
        elif not line.startswith(" "):
            current = None
    return found


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def build_requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("run.txt", project()["dependencies"]),
        ("test.txt", project()["dependencies"] + project()["optional-dependencies"]["test"]),
        ("build.txt", build_requirements()),
    ],
)
def test_every_requirement_is_pinned_within_its_range(lock, requirements):
    locked = pins(lock)
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in pyproject.toml but not in {lock}: run `make lock`"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside pyproject.toml's {requirement.specifier}"
        )


@pytest.mark.parametrize("lock", ["run.txt", "test.txt", "build.txt"])
def test_every_pin_carries_a_hash(lock):
    unhashed = [name for name, (_, hashes) in pins(lock).items() if hashes == 0]
    assert not unhashed, f"{lock}: no --hash for {unhashed}"


def test_a_package_has_one_version_across_the_locks():
    """run.txt and build.txt are resolved under test.txt's constraint: the tests exercise the
    versions that ship."""
    everything = pins("test.txt")
    for lock in ("run.txt", "build.txt"):
        for name, (version, _) in pins(lock).items():
            if name in everything:
                assert everything[name][0] == version, f"{name}: {lock} {version}, test.txt"


def test_the_locks_hold_no_machine_paths():
    for lock in LOCKS.glob("*.txt"):
        text = lock.read_text()
        assert "--find-links" not in text and "--index-url" not in text, lock.name
