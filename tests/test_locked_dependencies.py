"""A fresh clone runs what was tested: uv.lock matches pyproject.toml, and `make test` runs the locked versions.

`make test-latest` runs this suite on the newest releases in range (COCKPIT_DEPS=latest): there the
installed versions may differ from the lock, but must still be inside the ranges pyproject.toml states."""

from __future__ import annotations

import os
import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    return reqs


def _lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def test_the_lock_was_written_from_this_pyproject():
    """A range changed without `make lock` would leave the lock installing what pyproject no longer says."""
    ours = next(p for p in _lock()["package"] if p["name"] == "cockpit")
    locked = {(_norm(d["name"]), SpecifierSet(d.get("specifier", ""))) for d in ours["metadata"]["requires-dist"]}
    declared = {(_norm(r.name), r.specifier) for r in _pyproject_requirements()}
    assert locked == declared, "uv.lock is stale: run `make lock`, then `make test`, and commit both files"


def test_every_locked_version_is_inside_the_stated_ranges():
    locked = {_norm(p["name"]): Version(p["version"]) for p in _lock()["package"] if "version" in p}
    for req in _pyproject_requirements():
        assert locked[_norm(req.name)] in req.specifier, f"uv.lock has {req.name} {locked[_norm(req.name)]}, outside {req}"


def test_the_installed_versions_are_the_locked_ones():
    """`make test` installs the lock exactly; `make test-latest` may differ, inside the ranges."""
    locked = {_norm(p["name"]): p["version"] for p in _lock()["package"] if "version" in p and p["name"] != "cockpit"}
    latest = os.environ.get("COCKPIT_DEPS") == "latest"
    for req in _pyproject_requirements():
        installed = Version(version(req.name))
        assert installed in req.specifier, f"{req.name} {installed} is installed, outside the supported {req}"
    if latest:
        return
    differ = []
    for name, want in sorted(locked.items()):
        try:
            got = version(name)
        except PackageNotFoundError:
            continue  # a platform-only package (colorama on Windows, ...)
        if Version(got) != Version(want):
            differ.append(f"{name} {got} (locked {want})")
    assert not differ, "the environment is not the lock (run `make install`): " + ", ".join(differ)
