"""Test helpers: real git repositories with a small pytest suite, and a host dir outside /tmp.

Import the helpers you need (`from gitrepo import make_repo`); the `host_tmp` fixture reaches every test
through tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# A tiny product: one module and a passing suite.
SAMPLE_SUITE: dict[str, str] = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def run_git(repo: Path, *args: str, input: str | None = None) -> str:
    """Synchronous git for test setup and assertions (hooks off, fixed identity)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), **GIT_ENV}
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", *args],
        cwd=repo, env=env, capture_output=True, text=True, input=input,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)


def commit_files(repo: Path, files: dict[str, str], message: str = "change") -> str:
    """Write `files` into the checkout at `repo`, commit them, return the sha."""
    write_files(repo, files)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", message)
    return run_git(repo, "rev-parse", "HEAD")


def make_repo(path: Path, files: dict[str, str] | None = None, branch: str = "main") -> Path:
    """A git repo at `path` whose `branch` (checked out) has one commit with `files` (default: SAMPLE_SUITE)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    run_git(path, "init", "-q", "-b", branch)
    commit_files(path, SAMPLE_SUITE if files is None else files, "initial")
    return path


@pytest.fixture
def host_tmp():
    """A scratch dir outside /tmp. The sandbox mounts a fresh tmpfs over /tmp, so a pytest
    tmp_path is invisible inside it; under /var/tmp the read-only view is real and testable."""
    for base in ("/var/tmp", str(Path.home() / ".cache")):
        if os.path.isdir(base) and os.access(base, os.W_OK):
            d = Path(tempfile.mkdtemp(prefix="cockpit-test-", dir=base))
            break
    else:  # pragma: no cover
        pytest.skip("no writable directory outside /tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
