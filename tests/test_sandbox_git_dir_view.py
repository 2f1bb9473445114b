"""The product's `.git` as the sandbox shows it: what read-only git needs, nothing else (adversary A-09).

A user or a tool keeps more in `.git` than objects and refs: a credential store (`git config
credential.helper 'store --file=.git/credentials'`), git-crypt's key, hooks with a token in them, files
under `info/`, the other worktrees' admin dirs (their config.worktree, their index), a submodule's git
dir (under `modules/`, and under the tree's own admin dir when a linked worktree inits one). Each attack
reads one from a real bubblewrap sandbox over a real task worktree; liveness: with the common dir and the
admin dir bound whole (the view before the allow-lists) it prints the secret. A link in `.git` is not
followed (liveness: following it shows what it names). A clone borrowing its objects (alternates) still
shows its history, without the lender's `.git`. Then git log, status, diff main...HEAD and show still work.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from gitrepo import GIT_ENV, commit_files, make_repo, run_git

from cockpit.factory.workspaces import Workspaces
from cockpit.host import sandbox as sandbox_mod
from cockpit.host.sandbox import Sandbox

TOKEN = "ghp_GITDIR0123456789SECRET"


@pytest.fixture(scope="module")
def box() -> Sandbox:
    """One sandbox for the module: its first command scans the toolchain roots (~0.5 s), the rest reuse it."""
    return Sandbox("bwrap")


def _whole(git_dir: str, names, **_kw) -> list[str]:
    """The view before the allow-lists: the common dir and the tree's admin dir bound whole."""
    return [git_dir]


def _following_links(path: str) -> str | None:
    """The view that follows a link in `.git` to what it names (what binding an entry that exists did)."""
    return "dir" if os.path.isdir(path) else "file" if os.path.isfile(path) else None


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
    (git / "info" / "deploy-token").write_text(f"{TOKEN}-info\n")
    run_git(repo, "config", "extensions.worktreeConfig", "true")
    run_git(other, "config", "--worktree", "remote.fork.url", f"https://me:{TOKEN}-wtconfig@example.com/x.git")
    # another task's staged file: its name (here the secret) is in that tree's index
    (other / f"{TOKEN}-otherindex.txt").write_text("x\n")
    run_git(other, "add", f"{TOKEN}-otherindex.txt")
    # a submodule's git dir in the common dir: a credential store of its own
    sub = git / "modules" / "vendor" / "lib"
    sub.mkdir(parents=True)
    (sub / "config").write_text("[core]\n\trepositoryformatversion = 0\n")
    (sub / "credentials").write_text(f"https://me:{TOKEN}-module@github.com\n")
    # a submodule inited in this linked worktree lives in its admin dir, remote URL and all
    own_sub = git / "worktrees" / "T1" / "modules" / "lib"
    own_sub.mkdir(parents=True)
    (own_sub / "config").write_text(f'[remote "origin"]\n\turl = https://me:{TOKEN}-adminmodule@github.com/l\n')
    # a link where git keeps a file: bound as it stood, it shows what it names
    (host_tmp / "secret.txt").write_text(f"{TOKEN}-link\n")
    (git / "info" / "attributes").symlink_to(host_tmp / "secret.txt")
    (wt / "calc.py").write_text("def add(a, b):\n    return a + b  # edited\n")
    return {"repo": repo, "wt": wt, "other": other}


READS = {
    "store": "cat {git}/credentials",
    "crypt": "cat {git}/git-crypt/keys/default",
    "hook": "cat {git}/hooks/pre-push",
    "info": "cat {git}/info/deploy-token",
    "wtconfig": "cat {git}/worktrees/T2/config.worktree",
    "otherindex": "tr -c '[:print:]' ' ' < {git}/worktrees/T2/index",
    "module": "cat {git}/modules/vendor/lib/credentials",
    "adminmodule": "cat {git}/worktrees/T1/modules/lib/config",
}


async def _read(box: Sandbox, product, command: str) -> str:
    wt = product["wt"]
    r = await box.run(command.format(git=product["repo"] / ".git") + " 2>&1; echo end",
                      cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=64_000)
    return r.output


@pytest.mark.parametrize("what", sorted(READS))
async def test_what_git_does_not_need_is_not_in_the_sandbox(box, product, monkeypatch, what):
    with monkeypatch.context() as m:
        m.setattr(sandbox_mod, "_entries", _whole)
        live = await _read(box, product, READS[what])
    assert f"{TOKEN}-{what}" in live, f"liveness: with .git bound whole the {what} secret shows:\n{live}"
    out = await _read(box, product, READS[what])
    assert TOKEN not in out and "No such file" in out and out.rstrip().endswith("end"), out


async def test_a_link_in_the_git_dir_is_not_followed(box, product, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(sandbox_mod, "_plain", _following_links)
        live = await _read(box, product, "cat {git}/info/attributes")
    assert f"{TOKEN}-link" in live, f"liveness: following the link shows what it names:\n{live}"
    out = await _read(box, product, "cat {git}/info/attributes")
    assert TOKEN not in out and out.rstrip().endswith("end"), out


async def test_nothing_in_the_git_dirs_shown_holds_a_secret(box, product, monkeypatch):
    """The whole view, listed from inside: exactly what git needs, no token anywhere in it."""
    listing = ("find {git} -mindepth 1 -not -path '*/objects/?*' -not -path '*/refs/?*' -printf '%P\\n' | sort; "
               "grep -rals ghp_ {git} | head -3")
    with monkeypatch.context() as m:
        m.setattr(sandbox_mod, "_entries", _whole)
        live = await _read(box, product, listing)
    found = [line for line in live.splitlines() if line.startswith("/")]  # the files grep found the token in
    assert "credentials" in live.splitlines() and any(f.endswith(".git/credentials") for f in found), live
    out = await _read(box, product, listing)
    assert out.splitlines() == [
        "HEAD", "config", "info", "info/exclude", "objects", "refs", "worktrees", "worktrees/T1", "worktrees/T1/HEAD",
        "worktrees/T1/ORIG_HEAD", "worktrees/T1/commondir", "worktrees/T1/gitdir", "worktrees/T1/index", "end",
    ], out


async def test_git_still_reads_the_repository_in_there(box, product):
    wt = product["wt"]
    commit_files(product["repo"], {"main.txt": "moved\n"}, "Main moved")
    r = await box.run("git status --short; git log --oneline -1 main; git diff --stat main...HEAD; "
                      "git rev-parse --abbrev-ref HEAD; git show --stat HEAD | head -1",
                      cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=64_000)
    lines = r.output.splitlines()
    assert r.exit_code == 0 and "M calc.py" in lines[0] and "Main moved" in lines[1], r.output
    assert "cockpit/T1" in r.output and lines[-1].startswith("commit "), r.output


def _clone_shared(src: Path, dst: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), **GIT_ENV}
    subprocess.run(["git", "clone", "-q", "--shared", str(src), str(dst)], check=True, env=env, capture_output=True)


async def test_a_clone_that_borrows_its_objects_still_shows_its_history(box, host_tmp, monkeypatch):
    """`git clone --shared` (or --reference) keeps no objects of its own: they stay in the lender's store,
    named by objects/info/alternates. That store is bound (objects only): the lender's credentials are not."""
    lender = make_repo(host_tmp / "lender")
    commit_files(lender, {"calc.py": "def add(a, b):\n    return b + a\n"}, "Lender history")
    (lender / ".git" / "credentials").write_text(f"https://ci-bot:{TOKEN}-lender@github.com\n")
    _clone_shared(lender, host_tmp / "repo")
    wt = await Workspaces(host_tmp / "worktrees").ensure("shop", host_tmp / "repo", "main", "T1")
    cmd = f"git log --oneline -2 main; cat {lender}/.git/credentials 2>&1; ls {lender}/.git; echo end"
    with monkeypatch.context() as m:  # liveness: without the lender's store git misses the history
        m.setattr(sandbox_mod, "_alternates", lambda objects, trees: [])
        missing = await box.run(cmd, cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=64_000)
    assert "Lender history" not in missing.output and "bad object" in missing.output, missing.output
    r = await box.run(cmd, cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=64_000)
    assert "Lender history" in r.output and "initial" in r.output, r.output
    assert TOKEN not in r.output and r.output.split("\n", 2)[2].split() == ["cat:", f"{lender}/.git/credentials:",
                                                                             "No", "such", "file", "or", "directory",
                                                                             "objects", "end"], r.output
