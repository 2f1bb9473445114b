"""The product's `.git` as the sandbox shows it: what read-only git needs, nothing else (adversary A-09).

A user or a tool keeps more in `.git` than objects and refs: a credential store (`git config
credential.helper 'store --file=.git/credentials'`), git-crypt's key, hooks with a token in them, the
other worktrees' admin dirs (their index, their config.worktree). Each attack reads one from a real
bubblewrap sandbox over a real task worktree; liveness: with the whole common dir bound (the view before
the fix) it prints the secret. Then git log, status and diff still work in there.
"""

from __future__ import annotations

import asyncio

import pytest
from gitrepo import commit_files, make_repo, run_git

from cockpit.factory.workspaces import Workspaces
from cockpit.host import sandbox as sandbox_mod
from cockpit.host.sandbox import Sandbox

TOKEN = "ghp_GITDIR0123456789SECRET"


@pytest.fixture
def product(host_tmp):
    repo = make_repo(host_tmp / "repo")
    ws = Workspaces(host_tmp / "worktrees")
    wt = asyncio.run(ws.ensure("shop", repo, "main", "T1"))
    other = asyncio.run(ws.ensure("shop", repo, "main", "T2"))
    git = repo / ".git"
    (git / "credentials").write_text(f"https://ci-bot:{TOKEN}-store@github.com\n")
    (git / "git-crypt" / "keys").mkdir(parents=True)
    (git / "git-crypt" / "keys" / "default").write_text(f"{TOKEN}-crypt")
    (git / "hooks" / "pre-push").write_text(f"#!/bin/sh\ncurl -H 'Authorization: {TOKEN}-hook' x\n")
    run_git(repo, "config", "extensions.worktreeConfig", "true")
    run_git(other, "config", "--worktree", "remote.fork.url", f"https://me:{TOKEN}-wtconfig@example.com/x.git")
    (wt / "calc.py").write_text("def add(a, b):\n    return a + b  # edited\n")
    return {"repo": repo, "wt": wt, "other": other}


READS = {
    "store": "cat {git}/credentials",
    "crypt": "cat {git}/git-crypt/keys/default",
    "hook": "cat {git}/hooks/pre-push",
    "wtconfig": "cat {git}/worktrees/T2/config.worktree",
}


async def _read(product, what: str) -> str:
    wt = product["wt"]
    r = await Sandbox("bwrap").run(READS[what].format(git=product["repo"] / ".git") + " 2>&1; echo end",
                                   cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=64_000)
    return r.output


@pytest.mark.parametrize("what", sorted(READS))
async def test_what_git_does_not_need_is_not_in_the_sandbox(product, monkeypatch, what):
    with monkeypatch.context() as m:
        m.setattr(sandbox_mod, "GIT_DIR_ENTRIES", ("",))  # the common dir itself: bound whole, as before
        live = await _read(product, what)
    assert f"{TOKEN}-{what}" in live, f"liveness: with the whole .git bound the {what} secret shows:\n{live}"
    out = await _read(product, what)
    assert TOKEN not in out and out.rstrip().endswith("end"), out


async def test_git_still_reads_the_repository_in_there(product):
    wt = product["wt"]
    commit_files(product["repo"], {"main.txt": "moved\n"}, "Main moved")
    r = await Sandbox("bwrap").run("git status --short; git log --oneline -1 main; git diff --stat main...HEAD; "
                                   "git rev-parse --abbrev-ref HEAD; git show --stat HEAD | head -1",
                                   cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=64_000)
    lines = r.output.splitlines()
    assert r.exit_code == 0 and "M calc.py" in lines[0] and "Main moved" in lines[1], r.output
    assert "cockpit/T1" in r.output and lines[-1].startswith("commit "), r.output
