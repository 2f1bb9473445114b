"""An agent tries to reach the host: through the cockpit's own git, through symlinks, for secrets, by looking around.

Four classes (issue 16): host git, symlinks, secrets, the sandbox's view. Every attack is
staged for real (real repos, real worktrees, real bubblewrap) and carries a liveness
check: the same attack against a deliberately unhardened call (plain `git` with the
user's config, a plain `open`, the sandbox switched off) writes its marker, changes the
host file or prints the secret. Then the production call (safe_git through Workspaces,
safe_files, the bwrap sandbox) runs on the same staged tree and nothing lands.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from gitrepo import GIT_ENV, make_repo, run_git

from cockpit.host import safe_files, safe_git
from cockpit.factory.defects import REPRO_TEST_FILE, reproduce
from cockpit.factory.evidence import OutcomeStream
from cockpit.host import sandbox
from cockpit.host.sandbox import Sandbox
from cockpit.factory.workspaces import GitError, Workspaces, check_worktree, git

CAP = 64_000
SECRET = "sk-ant-api03-HOST-SECRET-0123456789abcdef"


# --- staging helpers ---------------------------------------------------------------------


def plain_git(cwd: Path, *args: str, home: Path | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """The unhardened call the liveness checks use: git as a careless host process runs it,
    with the user's HOME (global config) and environment."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home or os.environ.get("HOME", "/")), **GIT_ENV}
    env.pop("GIT_CONFIG_NOSYSTEM", None)
    env.update(extra_env or {})
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def sh(cwd: Path, script: str) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), **GIT_ENV}
    subprocess.run(["bash", "-ec", script], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


def plain_commit_copy(wt: Path, dest: Path) -> str:
    """Liveness for the commit refusals: the worktree's files, committed by plain git into a
    fresh repository of their own (so the task's branch and index stay untouched); `ls-tree`."""
    subprocess.run(["cp", "-a", str(wt), str(dest)], check=True)
    (dest / ".git").unlink()
    plain_git(dest, "init", "-q")
    plain_git(dest, "add", "-A")
    plain_git(dest, "commit", "-qm", "liveness")
    return plain_git(dest, "ls-tree", "-r", "HEAD").stdout


def marker_cmd(marker: Path) -> str:
    return f"sh -c 'touch {marker}; cat'"


@pytest.fixture
def product(host_tmp):
    """A product repo, a task worktree of it (via the production Workspaces), and a marker path outside both."""
    repo = make_repo(host_tmp / "repo")
    ws = Workspaces(host_tmp / "worktrees")
    wt = asyncio.run(ws.ensure("shop", repo, "main", "T1"))
    return {"root": host_tmp, "repo": repo, "ws": ws, "wt": wt, "marker": host_tmp / "MARKER"}


def nested_repo_with(wt: Path, marker: Path, *, fsmonitor: bool) -> None:
    """The issue's attack: a nested repository whose own config names a command (a clean filter
    applied by .gitattributes, or fsmonitor), committed as a gitlink with a backdated, changed file."""
    hook = wt.parent / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    cfg = f"git config core.fsmonitor {hook}" if fsmonitor else f"git config filter.x.clean \"{marker_cmd(marker)}\""
    sh(wt, f"""
        mkdir nest && cd nest && git init -q && echo hi > f.txt && echo '* filter=x' > .gitattributes
        git add -A && git -c core.hooksPath=/dev/null commit -qm n && {cfg}
        cd .. && git -c core.hooksPath=/dev/null add -A 2>/dev/null && git -c core.hooksPath=/dev/null commit -qm gitlink
        echo more >> nest/f.txt && touch -d 2001-01-01 nest/f.txt
    """)


# --- class 1: host git runs agent-defined config -------------------------------------------


@pytest.mark.parametrize("fsmonitor", [False, True], ids=["nested_filter", "nested_fsmonitor"])
async def test_nested_repository_config_never_runs_on_the_host(product, fsmonitor):
    wt, marker = product["wt"], product["marker"]
    nested_repo_with(wt, marker, fsmonitor=fsmonitor)
    # liveness: a plain `git status` there runs the nested repository's command
    plain_git(wt, "status", "--porcelain")
    assert marker.exists(), "the attack did not fire against plain git"
    marker.unlink()
    # the cockpit's own calls: submit's and the gate's status, add, diff, commit
    await git("status", "--porcelain", cwd=wt)
    await git("status", "--porcelain", "--untracked-files=no", cwd=wt)
    await git("diff", "--name-only", "HEAD~1", "HEAD", cwd=wt)
    with pytest.raises(GitError, match="nested git repository"):
        await product["ws"].commit(wt, "more", "builder-1", main_branch="main")
    await product["ws"].diff(product["repo"], "main", "cockpit/T1")
    assert not marker.exists()


async def test_global_textconv_never_runs_on_an_agent_diff(product):
    """The user's ~/.gitconfig names a textconv driver; the agent's .gitattributes applies it."""
    wt, marker, home = product["wt"], product["marker"], product["root"] / "home"
    home.mkdir()
    conv = product["root"] / "conv.sh"
    conv.write_text(f"#!/bin/sh\ntouch {marker}\ncat \"$1\"\n")
    conv.chmod(0o755)
    (home / ".gitconfig").write_text(f"[diff \"x\"]\n\ttextconv = {conv}\n")
    sh(wt, "echo '* diff=x' > .gitattributes && echo changed >> calc.py && git -c core.hooksPath=/dev/null add -A "
           "&& git -c core.hooksPath=/dev/null commit -qm c")
    plain_git(wt, "diff", "main...HEAD", home=home)
    assert marker.exists(), "liveness: plain git diff ran the global textconv"
    marker.unlink()
    os.environ["HOME_SAVED"] = os.environ.get("HOME", "")
    try:
        os.environ["HOME"] = str(home)  # the cockpit's own HOME holds that config
        out = await git("diff", "main...HEAD", cwd=wt)
        out += await product["ws"].diff(wt, "main", "HEAD")
        await git("log", "-p", "-1", cwd=wt)
        await git("show", "HEAD", cwd=wt)
    finally:
        os.environ["HOME"] = os.environ.pop("HOME_SAVED")
    assert "changed" in out and not marker.exists()


async def test_global_external_diff_never_runs(product, monkeypatch):
    wt, marker, home = product["wt"], product["marker"], product["root"] / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[diff]\n\texternal = {product['root'] / 'ext.sh'}\n")
    (product["root"] / "ext.sh").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (product["root"] / "ext.sh").chmod(0o755)
    sh(wt, "echo changed >> calc.py")
    plain_git(wt, "diff", home=home)
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv("HOME", str(home))
    await git("diff", cwd=wt)
    await git("diff", "--stat", cwd=wt)
    assert not marker.exists()


async def test_repo_hooks_path_into_the_worktree_never_runs_at_commit(product):
    """The product uses husky (`core.hooksPath = .husky` in its own config); the agent writes
    .husky/pre-commit in its worktree, then asks the cockpit to commit."""
    wt, marker, repo = product["wt"], product["marker"], product["repo"]
    run_git(repo, "config", "core.hooksPath", ".husky")
    (wt / ".husky").mkdir()
    (wt / ".husky" / "pre-commit").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (wt / ".husky" / "pre-commit").chmod(0o755)
    (wt / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    plain_git(wt, "add", "-A")
    plain_git(wt, "commit", "-qm", "liveness")
    assert marker.exists(), "liveness: plain git commit ran the agent's hook"
    marker.unlink()
    plain_git(wt, "reset", "-q", "--hard", "HEAD~1")
    (wt / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    (wt / ".husky").mkdir(exist_ok=True)
    (wt / ".husky" / "pre-commit").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (wt / ".husky" / "pre-commit").chmod(0o755)
    sha = await product["ws"].commit(wt, "swap operands", "builder-1", main_branch="main")
    assert sha and not marker.exists()


@pytest.mark.parametrize("var", ["GIT_CONFIG_PARAMETERS", "GIT_EXTERNAL_DIFF"])
async def test_inherited_git_environment_is_dropped(product, monkeypatch, var):
    """The cockpit started from a shell (or a hook) that carries git variables."""
    wt, marker = product["wt"], product["marker"]
    script = product["root"] / "x.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    value = f"'core.fsmonitor'='{script}'" if var == "GIT_CONFIG_PARAMETERS" else str(script)
    sh(wt, "echo changed >> calc.py")
    plain_git(wt, "status", extra_env={var: value}) if var != "GIT_EXTERNAL_DIFF" else \
        plain_git(wt, "diff", extra_env={var: value})
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv(var, value)
    await git("status", "--porcelain", cwd=wt)
    await git("diff", cwd=wt)
    assert not marker.exists()


async def test_dot_git_pointing_at_a_forged_git_dir_is_refused(product):
    """The agent rewrites its `.git` file to a git dir it made, whose config names fsmonitor."""
    wt, marker = product["wt"], product["marker"]
    script = product["root"] / "x.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    sh(wt, f"git init -q --bare evil.git && git --git-dir=evil.git config core.fsmonitor {script} "
           "&& git --git-dir=evil.git config core.bare false && echo 'gitdir: evil.git' > .git")
    plain_git(wt, "status")
    assert marker.exists()
    marker.unlink()
    with pytest.raises(GitError, match="points inside the worktree"):
        await product["ws"].commit(wt, "x", "builder-1")
    with pytest.raises(GitError):
        check_worktree(wt)
    assert not marker.exists()


async def test_dot_git_as_a_symlink_is_refused(product):
    wt = product["wt"]
    real = (wt / ".git").read_text()
    (wt / ".git").unlink()
    (product["root"] / "dotgit").write_text(real)
    (wt / ".git").symlink_to(product["root"] / "dotgit")
    assert plain_git(wt, "rev-parse", "HEAD").returncode == 0  # liveness: git follows it
    with pytest.raises(GitError, match="not the file a linked worktree has"):
        await product["ws"].head(wt)


# --- the commit tool refuses what would reach outside --------------------------------------


async def test_commit_refuses_a_nested_git_dir(product):
    wt = product["wt"]
    sh(wt, "mkdir -p vendor/lib && cd vendor/lib && git init -q && echo x > x && git add x && "
           "git -c core.hooksPath=/dev/null commit -qm x")
    assert "160000 commit" in plain_commit_copy(wt, product["root"] / "probe")  # liveness: plain git commits a gitlink
    head = await git("rev-parse", "HEAD", cwd=wt)
    with pytest.raises(GitError, match=r"vendor/lib/\.git is a nested git repository"):
        await product["ws"].commit(wt, "vendor it", "builder-1", main_branch="main")
    assert await git("rev-parse", "HEAD", cwd=wt) == head


async def test_commit_refuses_a_nested_repository_before_any_git_command(product, monkeypatch):
    """`git add -A` over a tracked, dirty nested repository runs that repository's fsmonitor:
    the refusal must come before any git command touches the tree, not after `add`."""
    wt, marker = product["wt"], product["marker"]
    nested_repo_with(wt, marker, fsmonitor=True)
    # liveness: the old order's first command, `git add -A`, as plain git runs it, fires the marker
    plain_git(wt, "add", "-A")
    assert marker.exists(), "the attack did not fire against plain git add -A"
    marker.unlink()
    # every git the cockpit starts goes through a logging `git` first on PATH (a real program)
    log, bindir = product["root"] / "git-calls.log", product["root"] / "bin"
    bindir.mkdir()
    shim = bindir / "git"
    shim.write_text(f'#!/bin/sh\necho "$PWD $*" >> {log}\nexec {shutil.which("git")} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    with pytest.raises(GitError, match=r"nest/\.git is a nested git repository"):
        await product["ws"].commit(wt, "more", "builder-1", main_branch="main")
    calls = log.read_text().splitlines() if log.exists() else []
    assert not [c for c in calls if c.startswith(str(wt))], calls  # no git ran in the tree before the refusal
    assert not marker.exists()
    await git("rev-parse", "HEAD", cwd=wt)  # liveness of the log: the cockpit's git does pass through it
    assert any(c.startswith(str(wt)) and c.endswith("rev-parse HEAD") for c in log.read_text().splitlines())


async def test_a_forged_git_file_never_binds_another_products_repository(product):
    """The agent rewrites its `.git` file to name a git dir it made inside its tree, whose `gitdir`
    names the tree back and whose `commondir` names another product's repository: the sandbox
    would bind that repository (read-only, but every commit of another product) into its view."""
    wt, root = product["wt"], product["root"]
    other = make_repo(root / "other", {"secret_plan.py": "PLAN = 'other product'\n"})
    sh(wt, f"mkdir fake && echo ../.git > fake/gitdir && echo {other}/.git > fake/commondir "
           "&& echo 'gitdir: fake' > .git.forged && mv .git.forged .git")
    cmd = f"git --git-dir={other}/.git show HEAD:secret_plan.py"
    # liveness: the forged admin dir names the tree back (what the old check asked), and the
    # command prints the other product's code wherever that repository is visible
    assert os.path.realpath(wt / "fake" / (wt / "fake" / "gitdir").read_text().strip()) == str(wt / ".git")
    off = await Sandbox("off").run(cmd, cwd=wt, writable=[wt], timeout_s=30, output_cap_bytes=CAP)
    assert "other product" in off.output, off.output
    assert str(other / ".git") not in [g.common for g in sandbox.git_dirs_of([str(wt)])]
    r = await Sandbox("bwrap").run(cmd, cwd=wt, writable=[wt], timeout_s=30, output_cap_bytes=CAP)
    assert "other product" not in r.output and not r.ok, r.output


async def test_a_fifo_in_a_forged_git_dir_never_hangs_the_sandbox_start(product):
    """The forged admin dir's `commondir` is a FIFO: a plain read of it blocks for ever, and the
    sandbox's start reads it on the event loop (every command of every agent would hang)."""
    wt = product["wt"]
    sh(wt, "mkdir worktrees && mkfifo worktrees/commondir && echo ../.git > worktrees/gitdir "
           "&& echo 'gitdir: worktrees' > .git.forged && mv .git.forged .git")
    fifo = wt / "worktrees" / "commondir"
    # liveness: the read the old order did first blocks (a real process, killed after 2 s)
    p = subprocess.run(["timeout", "2", sys.executable, "-c", f"open({str(fifo)!r}).read()"], timeout=60)
    assert p.returncode == 124, "the FIFO read did not block"
    r = await asyncio.wait_for(Sandbox("bwrap").run("echo started", cwd=wt, writable=[wt], timeout_s=30,
                                                    output_cap_bytes=CAP), timeout=60)
    assert r.ok and "started" in r.output, r.output


async def test_commit_refuses_a_staged_gitlink_unless_main_has_submodules(product):
    """A gitlink already in the index (no nested .git left to find): refused by mode 160000."""
    wt, repo = product["wt"], product["repo"]
    sha = run_git(repo, "rev-parse", "HEAD")
    (wt / "sub").mkdir()  # an uninitialised submodule: `add -A` keeps the gitlink
    run_git(wt, "update-index", "--add", "--cacheinfo", f"160000,{sha},sub")
    with pytest.raises(GitError, match="sub is a gitlink"):
        await product["ws"].commit(wt, "add sub", "builder-1", main_branch="main")
    assert "sub" not in run_git(wt, "ls-files", "--stage")  # the index was reset
    # liveness of the exception: main with submodules allows it
    run_git(repo, "config", "-f", ".gitmodules", "submodule.sub.path", "sub")
    run_git(repo, "add", ".gitmodules")
    run_git(repo, "commit", "-qm", "submodules")
    run_git(wt, "update-index", "--add", "--cacheinfo", f"160000,{sha},sub")
    assert await product["ws"].commit(wt, "add sub", "builder-1", main_branch="main")
    assert "160000 commit" in run_git(wt, "ls-tree", "HEAD")


@pytest.mark.parametrize("link,target", [
    ("passwd", "/etc/passwd"),
    ("up", "../../../../etc/passwd"),
    ("deep/up", "../../escape"),
    ("chain", "self/self/../.."),
], ids=["absolute", "dotdot", "nested_dotdot", "through_a_link"])
async def test_commit_refuses_a_symlink_leaving_the_tree(product, link, target):
    wt = product["wt"]
    (wt / "self").symlink_to(".")  # inside: allowed on its own
    (wt / link).parent.mkdir(parents=True, exist_ok=True)
    (wt / link).symlink_to(target)
    tree = plain_commit_copy(wt, product["root"] / "probe")
    assert "120000 blob" in tree and link in tree  # liveness: plain git commits the link
    with pytest.raises(GitError, match=f"{link} is a symlink to"):
        await product["ws"].commit(wt, "link", "builder-1", main_branch="main")
    (wt / link).unlink()
    assert await product["ws"].commit(wt, "a link inside is fine", "builder-1", main_branch="main")


# --- class 2: host-side writes and reads through symlinks ---------------------------------


async def test_reproduce_never_writes_through_a_committed_symlink(product):
    """The builder commits test_cockpit_reproduction.py -> a host file; the breaker's file is written there."""
    wt, repo, root = product["wt"], product["repo"], product["root"]
    host_file = root / "host.conf"
    host_file.write_text("precious\n")
    (wt / REPRO_TEST_FILE).symlink_to(host_file)
    run_git(wt, "add", "-A")
    run_git(wt, "commit", "-qm", "link")  # as it would land before the commit tool refused it
    sha = run_git(wt, "rev-parse", "HEAD")
    # liveness: a plain write into a checkout of that commit overwrites the host file
    probe = root / "probe"
    run_git(repo, "worktree", "add", "--detach", str(probe), sha)
    (probe / REPRO_TEST_FILE).write_text("def test_x():\n    assert False\n")
    assert host_file.read_text() != "precious\n"
    host_file.write_text("precious\n")
    res = await reproduce(Sandbox("bwrap"), repo, root / "scratch", sha, "test_file",
                          "def test_neg():\n    assert -1 > 0\n", timeout_s=60, output_cap_bytes=CAP)
    assert host_file.read_text() == "precious\n"
    assert res.fails, res.output  # and the reproduction still ran, on a regular file


def test_write_through_a_symlinked_directory_is_refused(host_tmp):
    tree, outside = host_tmp / "tree", host_tmp / "outside"
    tree.mkdir()
    outside.mkdir()
    (tree / "sub").symlink_to(outside)
    (tree / "sub" / "x.py").write_text("liveness")  # a plain write lands outside
    assert (outside / "x.py").exists()
    (outside / "x.py").unlink()
    with pytest.raises(safe_files.UnsafePath):
        safe_files.write_text(tree, "sub/x.py", "attack")
    assert not (outside / "x.py").exists()


@pytest.mark.parametrize("rel", ["../outside/x", "/etc/passwd", "a/../../outside/x"])
def test_paths_that_climb_out_are_refused(host_tmp, rel):
    tree = host_tmp / "tree"
    tree.mkdir()
    (host_tmp / "outside").mkdir()
    (host_tmp / "outside" / "x").write_text("secret")
    if not rel.startswith("/"):
        assert (tree / rel).resolve().is_file() or rel.startswith("a/")  # liveness: the plain path resolves out
    with pytest.raises(safe_files.UnsafePath):
        safe_files.read_bytes(tree, rel)
    with pytest.raises(safe_files.UnsafePath):
        safe_files.write_bytes(tree, rel, b"x")


async def test_the_outcome_stream_dir_cannot_be_swapped_from_the_sandbox(host_tmp):
    """The tests gate's reporter and its FIFO live in a dir bound read-only: a link in place of either fails."""
    secret = host_tmp / "credentials"
    secret.write_text(SECRET)
    stream = OutcomeStream(host_tmp / "scratch")
    try:
        # liveness: were the dir writable, the swap would land
        r = await Sandbox("bwrap").run(f"ln -sf {secret} outcomes.fifo", cwd=stream.dir, writable=[stream.dir],
                                       timeout_s=20, output_cap_bytes=CAP)
        assert r.ok and (stream.dir / "outcomes.fifo").is_symlink(), r.output
        stream.remove()
        stream = OutcomeStream(host_tmp / "scratch")
        r = await Sandbox("bwrap").run(f"ln -sf {secret} outcomes.fifo; ln -sf {secret} cockpit_outcomes.py",
                                       cwd=stream.dir, writable=[], readable=[stream.dir], timeout_s=20,
                                       output_cap_bytes=CAP)
        assert not r.ok and "Read-only file system" in r.output
        assert stat.S_ISFIFO(os.lstat(stream.fifo).st_mode) and SECRET not in (stream.dir / "cockpit_outcomes.py").read_text()
    finally:
        stream.remove()


def test_a_fifo_in_place_of_a_file_does_not_hang_the_cockpit(host_tmp):
    import threading

    tree = host_tmp / "tree"
    tree.mkdir()
    os.mkfifo(tree / "count.jsonl")
    # liveness: a plain read blocks until someone writes (here the test itself, after 0.3 s)
    done = threading.Event()
    reader = threading.Thread(target=lambda: ((tree / "count.jsonl").read_bytes(), done.set()), daemon=True)
    reader.start()
    assert not done.wait(0.3), "a plain read of the FIFO returned at once"
    with open(tree / "count.jsonl", "wb") as w:
        w.write(b"x")
    reader.join(5)
    with pytest.raises(safe_files.UnsafePath, match="not a regular file"):
        safe_files.read_bytes(tree, "count.jsonl")


# --- class 3: secrets ----------------------------------------------------------------------

HOME_SECRETS = {
    ".bashrc": f"export ANTHROPIC_API_KEY={SECRET}\n",
    ".bash_history": f"curl -H 'x-api-key: {SECRET}'\n",
    ".profile": f"export ANTHROPIC_API_KEY={SECRET}\n",
    ".config/gh/hosts.yml": f"github.com:\n  oauth_token: {SECRET}\n",
    ".npmrc": f"//registry.npmjs.org/:_authToken={SECRET}\n",
    ".cargo/credentials.toml": f"[registry]\ntoken = \"{SECRET}\"\n",
    ".config/git/credentials": f"https://me:{SECRET}@github.com\n",
    ".vault-token": SECRET,
}


@pytest.fixture
def user_home(host_tmp, monkeypatch):
    home = host_tmp / "home"
    for rel, text in HOME_SECRETS.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.mark.parametrize("rel", sorted(HOME_SECRETS))
async def test_credentials_in_the_users_home_never_reach_a_command(host_tmp, user_home, rel):
    wd = host_tmp / "wt"
    wd.mkdir()
    cmd = f"cat {user_home / rel}; cat ~/{rel}; grep -r sk-ant / --include='*' -s -l 2>/dev/null | head -3; echo end"
    off = await Sandbox("off").run(f"cat {user_home / rel}", cwd=wd, writable=[wd], timeout_s=20,
                                   output_cap_bytes=CAP)
    assert SECRET in off.output  # liveness: unconfined, the file is readable
    r = await Sandbox("bwrap").run(cmd.replace("grep -r sk-ant / --include='*' -s -l 2>/dev/null | head -3; ", ""),
                                   cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=CAP)
    assert "end" in r.output and SECRET not in r.output, r.output


async def test_remote_url_token_in_the_repos_config_is_not_in_the_sandbox(product):
    wt, repo = product["wt"], product["repo"]
    run_git(repo, "remote", "add", "origin", f"https://me:{SECRET}@git.example.com/shop.git")
    run_git(repo, "config", "credential.helper", f"store --file {product['root']}/creds")
    assert SECRET in plain_git(wt, "config", "-l").stdout  # liveness: git in the worktree sees it
    r = await Sandbox("bwrap").run("git config -l; git remote -v; cat $(git rev-parse --git-common-dir)/config; "
                                   "git log --oneline -1", cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert SECRET not in r.output and "initial" in r.output, r.output


async def test_etc_secrets_are_empty_in_the_sandbox(host_tmp):
    wd = host_tmp / "wt"
    wd.mkdir()
    off = await Sandbox("off").run("cat /etc/shadow | head -1", cwd=wd, writable=[wd], timeout_s=20,
                                   output_cap_bytes=CAP)
    assert "root:" in off.output  # liveness: the cockpit's user (root here) can read it
    r = await Sandbox("bwrap").run("cat /etc/shadow; cat /etc/gshadow; echo end", cwd=wd, writable=[wd],
                                   timeout_s=20, output_cap_bytes=CAP)
    assert r.output.strip() == "end", r.output


# --- class 4: the sandbox's view -----------------------------------------------------------


async def test_other_products_and_the_factory_do_not_exist_in_the_sandbox(product):
    root, wt = product["root"], product["wt"]
    other = make_repo(root / "other")
    (root / "memory").mkdir()
    (root / "memory" / "cockpit.db").write_text(SECRET)
    cmd = f"ls {other}; cat {root}/memory/cockpit.db; ls {product['repo']}; ls {root}; echo end"
    off = await Sandbox("off").run(cmd, cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert "calc.py" in off.output and SECRET in off.output  # liveness
    r = await Sandbox("bwrap").run(cmd, cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert SECRET not in r.output and "calc.py" not in r.output and "end" in r.output, r.output
    assert "other" not in r.output.split()


async def test_forged_dot_git_cannot_bind_another_products_repository(product):
    """The agent points its `.git` at another product's worktree admin dir to have its objects bound."""
    root, wt = product["root"], product["wt"]
    other = make_repo(root / "other", {"secret.py": f"KEY = '{SECRET}'\n"})
    other_ws = Workspaces(root / "other-worktrees")
    owt = await other_ws.ensure("other", other, "main", "T9")
    forged = (owt / ".git").read_text()
    # liveness: with that product's worktree given to the sandbox, its objects are readable
    r = await Sandbox("bwrap").run("git show HEAD:secret.py", cwd=owt, readable=[owt], writable=[],
                                   timeout_s=20, output_cap_bytes=CAP)
    assert SECRET in r.output
    (wt / ".git").write_text(forged)
    r = await Sandbox("bwrap").run(f"git show HEAD:secret.py; ls {other}/.git; echo end", cwd=wt, writable=[wt],
                                   timeout_s=20, output_cap_bytes=CAP)
    assert SECRET not in r.output and "end" in r.output, r.output


async def test_writes_beside_the_worktree_fail(product):
    wt = product["wt"]
    cmd = f"touch {wt.parent}/sibling; touch {wt.parent.parent}/x; echo end"
    await Sandbox("off").run(cmd, cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert (wt.parent / "sibling").exists()  # liveness
    (wt.parent / "sibling").unlink()
    (wt.parent.parent / "x").unlink()
    r = await Sandbox("bwrap").run(cmd, cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert r.output.count("Read-only file system") == 2, r.output
    assert not (wt.parent / "sibling").exists() and not (wt.parent.parent / "x").exists()


async def test_a_toolchain_in_home_shows_only_itself(host_tmp, user_home):
    tool = user_home / ".cargo" / "bin"
    tool.mkdir(parents=True)
    (tool / "mytool").write_text("#!/bin/sh\necho tool-ran\n")
    (tool / "mytool").chmod(0o755)
    wd = host_tmp / "wt"
    wd.mkdir()
    cmd = f"{tool}/mytool; cat {user_home}/.bashrc {user_home}/.npmrc; echo LS; ls -A {user_home}; echo end"
    off = await Sandbox("off").run(cmd, cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=CAP)
    assert SECRET in off.output  # liveness
    r = await Sandbox("bwrap", toolchains=[user_home / ".cargo"]).run(cmd, cwd=wd, writable=[wd], timeout_s=20,
                                                                      output_cap_bytes=CAP)
    assert "tool-ran" in r.output and SECRET not in r.output, r.output
    assert r.output.split("LS\n", 1)[1].split() == [".cargo", "end"], r.output


async def test_home_is_empty_and_private(host_tmp, user_home):
    wd = host_tmp / "wt"
    wd.mkdir()
    off = await Sandbox("off").run(f"ls -A {user_home}", cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=CAP)
    assert ".bashrc" in off.output  # liveness: unconfined, the user's home is right there
    r = await Sandbox("bwrap").run(f"ls -A ~; echo x > ~/.bashrc; echo x > {user_home}/.bashrc; echo end", cwd=wd,
                                   writable=[wd], timeout_s=20, output_cap_bytes=CAP)
    assert r.output.splitlines()[-1] == "end" and ".bashrc" not in r.output.split(), r.output
    assert (user_home / ".bashrc").read_text() == HOME_SECRETS[".bashrc"]


# --- read-only git for agents --------------------------------------------------------------


async def test_git_reads_work_and_writes_fail_in_the_sandbox(product):
    wt, ws = product["wt"], product["ws"]
    (wt / "calc.py").write_text("def add(a, b):\n    return a + b  # checked\n")
    await ws.commit(wt, "Comment the sum", "builder-1", main_branch="main")
    (wt / "calc.py").write_text("dirty\n")
    box = Sandbox("bwrap")
    for cmd, want in [("git status --short", "M calc.py"), ("git log --oneline -3", "Comment the sum"),
                      ("git diff main...HEAD", "+    return a + b  # checked"), ("git show --stat HEAD", "calc.py"),
                      ("git blame calc.py", "dirty"), ("git grep -n add", "calc.py:1"),
                      ("git rev-parse HEAD", await git("rev-parse", "HEAD", cwd=wt))]:
        r = await box.run(cmd, cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
        assert r.ok and want in r.output, (cmd, r.output)
    before = await git("rev-parse", "HEAD", cwd=wt)
    r = await box.run("git add -A && git commit -qm sneaky; git update-ref refs/heads/main HEAD; "
                      "git config user.name x; echo end", cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert "end" in r.output
    assert await git("rev-parse", "HEAD", cwd=wt) == before
    assert run_git(product["repo"], "rev-parse", "main") != before
    # a reviewer's read-only tree: the same reads work
    r = await box.run("git log --oneline -1 && git diff main...HEAD --stat", cwd=wt, readable=[wt], writable=[],
                      timeout_s=20, output_cap_bytes=CAP)
    assert r.ok and "calc.py" in r.output, r.output


def test_only_safe_directory_is_kept_from_the_users_config(host_tmp, monkeypatch):
    """The user's global config is not read by the cockpit's git, but for the repositories it
    trusts despite their owner (`safe.directory`): config that runs nothing."""
    home = host_tmp / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[safe]\n\tdirectory = {host_tmp}/theirs\n[core]\n\tfsmonitor = /bin/false\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(safe_git, "_trusted", None)
    line = safe_git.argv("status")
    assert f"safe.directory={host_tmp}/theirs" in line
    assert "core.fsmonitor=false" in line and "core.fsmonitor=/bin/false" not in line
    assert safe_git.hardened_env()["GIT_CONFIG_GLOBAL"] == "/dev/null"


def test_no_git_subprocess_outside_safe_git():
    """The rule is enforced in one place: no module of the cockpit starts git itself."""
    import re

    pkg = Path(__file__).resolve().parents[1] / "cockpit"
    call = re.compile(r"""(subprocess\.(run|Popen|call|check_call|check_output)|create_subprocess_(exec|shell)"""
                      r"""|os\.(system|exec\w*|spawn\w*))\(\s*\[?\s*(["']git\b|[\w.]*which\(["']git)""")
    offenders = [str(f.relative_to(pkg)) for f in pkg.rglob("*.py")
                 if f.name != "safe_git.py" and call.search(f.read_text(encoding="utf-8"))]
    assert offenders == []
    # liveness: the pattern does catch the call this rule forbids
    assert call.search('subprocess.run(["git", "status"], cwd=wt)')
    assert call.search('await asyncio.create_subprocess_exec("git", *args)')


async def test_tests_gate_precheck_on_a_nested_repository_runs_nothing_on_the_host(product):
    from cockpit.factory.gates import run_tests_gate

    wt, marker = product["wt"], product["marker"]
    nested_repo_with(wt, marker, fsmonitor=True)
    plain_git(wt, "status", "--porcelain", "--untracked-files=no")
    assert marker.exists()  # liveness: the gate's own pre-check, unhardened, runs it
    marker.unlink()
    sha = await git("rev-parse", "HEAD", cwd=wt)
    await run_tests_gate(Sandbox("bwrap"), "true", wt, sha, timeout_s=30, output_cap_bytes=CAP)
    assert not marker.exists()


async def test_submodule_url_with_a_command_transport_is_never_fetched(product, monkeypatch):
    """`.gitmodules` names `ext::sh -c ...` as the URL; the user's config allows ext (some do, for
    remote helpers). Whatever git the cockpit runs, no transport runs."""
    wt, marker, root = product["wt"], product["marker"], product["root"]
    home = root / "home"
    home.mkdir()
    (home / ".gitconfig").write_text('[protocol "ext"]\n\tallow = always\n')
    sha = run_git(product["repo"], "rev-parse", "HEAD")
    (wt / ".gitmodules").write_text(f'[submodule "s"]\n\tpath = s\n\turl = "ext::sh -c touch% {marker}"\n')
    run_git(wt, "update-index", "--add", "--cacheinfo", f"160000,{sha},s")
    plain_git(wt, "submodule", "update", "--init", home=home)
    assert marker.exists(), "liveness: plain git ran the ext:: transport"
    marker.unlink()
    monkeypatch.setenv("HOME", str(home))
    rc, _, err = await safe_git.run("submodule", "update", "--init", cwd=wt)
    assert rc != 0 and not marker.exists(), err
    rc, _, err = await safe_git.run("fetch", f"ext::sh -c touch% {marker}", cwd=wt)
    assert rc != 0 and "transport 'ext' not allowed" in err.decode(), err
    assert not marker.exists()


async def test_a_symlink_to_a_host_secret_reads_nothing_in_the_sandbox(product, user_home):
    wt = product["wt"]
    (wt / "notes").symlink_to(user_home / ".bashrc")
    off = await Sandbox("off").run("cat notes", cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert SECRET in off.output  # liveness
    r = await Sandbox("bwrap").run("cat notes; echo end", cwd=wt, writable=[wt], timeout_s=20, output_cap_bytes=CAP)
    assert SECRET not in r.output and "No such file or directory" in r.output, r.output


async def test_the_commit_tool_refuses_with_the_reason_on_record(host_tmp):
    """Through the agent's own tools: a command in the sandbox makes the link, `commit` refuses it,
    the model reads why, and the refusal is an `action.refused` event."""
    from cockpit.agents.tools import WorktreeTools
    from cockpit.domain import Kind
    from cockpit.factory import commands
    from cockpit.factory.task_tools import TaskToolbox
    from cockpit.store import Store

    repo = make_repo(host_tmp / "repo")
    store = await Store.open(host_tmp / "memory" / "cockpit.db")
    try:
        tid = (await commands.add_task(store, product="shop", title="links")).task_id
        ws = Workspaces(host_tmp / "worktrees")
        wt = await ws.ensure("shop", repo, "main", tid)
        box = TaskToolbox(role="builder", agent="builder-1", task_id=tid, product="shop", worktree=wt,
                          worktree_tools=WorktreeTools(wt, Sandbox("bwrap")), store=store, workspaces=ws,
                          main_branch="main")
        made = await box.call("run_command", {"command": "ln -s /etc/passwd conf && echo made"})
        assert "made" in made.text  # liveness: the link is really there for git to commit
        out = await box.call("commit", {"message": "add conf"})
        assert out.is_error and out.text.startswith("refused: conf is a symlink to '/etc/passwd'"), out.text
        await store.flush()
        refused = await store.events(kinds=[Kind.REFUSED])
        assert [e.data["kind"] for e in refused] == ["tool:commit"] and "conf" in refused[0].data["reason"]
        assert run_git(wt, "log", "--oneline").count("\n") == 0  # still only main's commit
    finally:
        await store.close()
