"""What the sandbox keeps between commands to start fast, and that what it keeps is never stale.

/etc is one private copy without its secrets (cockpit/host/etc_view.py): secrets stay out, the
copy is never older than /etc, a copy in use is never pulled away. These attacks run on a fake
/etc under a host directory (the real one is not ours to change), bound at /etc inside a real
bubblewrap sandbox; two tests use the real /etc. The verdict on a worktree's `.git` (which git
directory to bind) is kept while that file is unchanged, whatever the agent restores of it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gitrepo import make_repo

from cockpit.factory.workspaces import Workspaces
from cockpit.host import etc_view, sandbox
from cockpit.host.etc_view import EtcView
from cockpit.host.sandbox import HIDDEN_IN_ETC, CommandResult, Sandbox
from cockpit.host.temp_dirs import remove_tree


SECRET = "sk-ant-etc-0123456789"
CAP = 64_000


@pytest.fixture
def fake_etc(host_tmp: Path) -> Path:
    etc = host_tmp / "etc"
    (etc / "app" / "conf.d").mkdir(parents=True)
    (etc / "hosts.conf").write_text("old-host\n")
    (etc / "app" / "conf.d" / "one.conf").write_text("one\n")
    (etc / "keys").mkdir()
    (etc / "keys" / "id").write_text(SECRET)
    (etc / "alias").symlink_to("token")  # a link to a hidden name shows the emptied file, not the secret
    return etc


@pytest.fixture
def wd(host_tmp: Path) -> Path:
    d = host_tmp / "wt"
    d.mkdir()
    return d


def view(etc: Path, hidden: tuple[str, ...] = ("token", "keys")) -> EtcView:
    return EtcView(etc, [etc / h for h in hidden])


async def run(sb: Sandbox, command: str, wd: Path) -> CommandResult:
    r = await sb.run(command, cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=CAP)
    assert r.exit_code is not None, r.output
    return r


async def until(check, what: str, timeout: float = 30.0) -> None:
    """Wait for a fact (generous for a loaded machine); fail loudly if it never holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.01)


READ = "cat /etc/token /etc/alias /etc/keys/id /etc/hosts.conf /etc/app/conf.d/*.conf 2>&1; echo end"


async def test_the_copy_holds_every_entry_but_the_secrets(fake_etc, wd):
    (fake_etc / "token").write_text(SECRET)
    # liveness: the same command on a copy that hides nothing prints the secret from /etc
    shown = await run(Sandbox(etc_view=view(fake_etc, hidden=())), READ, wd)
    assert SECRET in shown.output and "old-host" in shown.output, shown.output
    r = await run(Sandbox(etc_view=view(fake_etc)), READ, wd)
    assert SECRET not in r.output, r.output
    assert "old-host" in r.output and "one" in r.output and r.output.rstrip().endswith("end"), r.output


async def test_a_change_to_etc_is_seen_by_the_very_next_command(fake_etc, wd, monkeypatch):
    """Written in place (no directory mtime changes), a new file, a secret that appears: next command."""
    v = view(fake_etc)
    sb = Sandbox(etc_view=v)
    assert "old-host" in (await run(sb, READ, wd)).output

    def change() -> None:
        with open(fake_etc / "hosts.conf", "r+") as f:  # in place: same inode, same size
            f.write("new-host\n")
        (fake_etc / "app" / "conf.d" / "two.conf").write_text("two\n")
        (fake_etc / "token").write_text(SECRET)

    change()
    r = await run(sb, READ, wd)
    assert "new-host" in r.output and "two" in r.output and SECRET not in r.output, r.output
    assert v.builds == 2

    # liveness: a copy kept whatever changed still shows the old content and misses the new file
    (fake_etc / "token").unlink()
    (fake_etc / "app" / "conf.d" / "two.conf").unlink()
    (fake_etc / "hosts.conf").write_text("old-host\n")
    stale = view(fake_etc)
    stale_sb = Sandbox(etc_view=stale)
    assert "old-host" in (await run(stale_sb, READ, wd)).output
    monkeypatch.setattr(stale, "_stale", lambda: False)
    change()
    r = await run(stale_sb, READ, wd)
    assert "old-host" in r.output and "two" not in r.output, r.output


async def test_a_copy_a_running_command_holds_stays_until_it_ends(fake_etc, wd, monkeypatch):
    """/etc changes while a command runs: the next command gets a new copy, the running one keeps its own."""

    async def scenario(v: EtcView) -> tuple[str, str]:
        sb = Sandbox(etc_view=v)
        cmd = "touch started; while [ ! -e go ]; do sleep 0.01; done; cat /etc/hosts.conf 2>&1; echo end"
        first = asyncio.create_task(run(sb, cmd, wd))
        # the first command runs (it holds its copy from before it starts)
        await until(lambda: (wd / "started").exists() or first.done(), "the first command starts")
        assert (wd / "started").exists(), (await first).output
        held = v._copy.path
        (fake_etc / "hosts.conf").write_text("new-host\n")
        assert "new-host" in (await run(sb, "cat /etc/hosts.conf", wd)).output
        (wd / "go").touch()
        out = (await first).output
        for name in ("started", "go"):
            (wd / name).unlink()
        (fake_etc / "hosts.conf").write_text("old-host\n")
        return out, held

    v = view(fake_etc)
    out, held = await scenario(v)
    assert "old-host" in out, out
    assert v.builds == 2
    await until(lambda: not os.path.exists(held), "the replaced copy goes with its last user")

    # liveness: a copy removed as soon as it is replaced pulls /etc from under the running command
    doomed = view(fake_etc)
    monkeypatch.setattr(doomed, "_retire", lambda c: remove_tree(os.path.dirname(c.path)))
    out, _ = await scenario(doomed)
    assert "old-host" not in out and "No such file" in out, out


async def test_the_real_etc_is_bound_once_and_its_secrets_are_empty(host_tmp, wd):
    """The point of the copy: no mount per credential file at every start; and nothing leaks."""
    sb = Sandbox()
    etc = sb._etc.acquire_refreshed()
    assert etc is not None, sb._etc.unavailable
    try:
        argv = sb._bwrap_argv("bwrap", "true", wd, [wd], {}, etc=etc)
    finally:
        sb._etc.release(etc)
    targets = [argv[i + 2] if a in ("--ro-bind", "--bind") else argv[i + 1]
               for i, a in enumerate(argv) if a in ("--ro-bind", "--bind", "--tmpfs")]  # fmt: skip
    assert [t for t in targets if t == "/etc" or t.startswith("/etc/")] == ["/etc"], argv
    shadow = Path("/etc/shadow")
    assert shadow.exists() and os.access(shadow, os.R_OK) and shadow.read_text()  # liveness: a secret to keep
    r = await run(sb, "cat /etc/shadow /etc/gshadow; grep -c . /etc/passwd", wd)
    assert r.ok and r.output.strip().isdigit(), r.output  # only passwd's line count: shadow reads empty


async def test_without_a_copy_the_secrets_are_hidden_by_mounts(host_tmp, wd, monkeypatch):
    """An /etc too big to copy (or no inotify): each secret gets its mount again, nothing leaks."""
    monkeypatch.setattr(etc_view, "MAX_ENTRIES", 3)
    v = EtcView("/etc", HIDDEN_IN_ETC)
    sb = Sandbox(etc_view=v)
    off = await Sandbox("off").run("cat /etc/shadow", cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=CAP)
    assert "root:" in off.output  # liveness: the cockpit's user reads it outside
    r = await run(sb, "cat /etc/shadow /etc/gshadow; echo end", wd)
    assert v.unavailable is not None and "entries" in v.unavailable
    assert r.output.strip() == "end", r.output


async def test_a_rewritten_dot_git_is_checked_again_though_its_size_and_mtime_are_restored(host_tmp, monkeypatch):
    """The agent rewrites its `.git` in place, same size, mtime set back: its ctime still moved."""
    monkeypatch.setattr(sandbox, "_RACY_GIT_NS", 0)  # the tree was made a moment ago: trust it at once
    repo = make_repo(host_tmp / "repo")
    wt = await Workspaces(host_tmp / "worktrees").ensure("shop", repo, "main", "T1")
    common = os.path.realpath(repo / ".git")
    see = f"git log --oneline -1; ls {common}/HEAD 2>&1; echo end"

    async def forge_and_look(sb: Sandbox) -> str:
        first = await run(sb, see, wt)
        assert first.ok and "initial" in first.output and "No such file" not in first.output, first.output
        dot_git = wt / ".git"
        before = dot_git.stat()
        forged = "gitdir: /nowhere"
        dot_git.write_text(forged.ljust(before.st_size - 1, "x") + "\n")  # in place: same inode, same size
        os.utime(dot_git, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = dot_git.stat()
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
        out = (await run(sb, see, wt)).output
        dot_git.write_text(f"gitdir: {common}/worktrees/T1\n")  # back as it was, for the next round
        return out

    out = await forge_and_look(Sandbox())
    assert "No such file" in out and "initial" not in out, out  # the repository is no longer bound

    # liveness: a verdict kept on what the agent can restore (size, mtime) still binds it
    real = sandbox._stat_key
    monkeypatch.setattr(sandbox, "_stat_key", lambda p: None if (k := real(p)) is None else k[:5])
    sandbox._checked.clear()
    out = await forge_and_look(Sandbox())
    assert "No such file" not in out and f"{common}/HEAD" in out, out


def test_taking_the_copy_never_waits_for_one_being_made():
    """Commands start on the event loop: while a worker thread copies /etc, `acquire` answers at once
    ("none yet": the caller then waits in a thread), it never blocks the loop for the copy's ~0.1 s."""

    def during_a_copy(v: EtcView) -> tuple[object, int]:
        making, go_on = threading.Event(), threading.Event()
        make = v._make

        def slow_make(watch):  # the copy is under way until the test has asked
            making.set()
            go_on.wait(30)
            return make(watch)

        v._make = slow_make
        worker = threading.Thread(target=lambda: (c := v.acquire_refreshed()) and v.release(c))
        worker.start()
        assert making.wait(30), "the copy never started"
        asked: list = []
        asking = threading.Thread(target=lambda: asked.append(v.acquire()))
        asking.start()
        asking.join(1)  # a non-blocking answer comes at once; a blocked one only after go_on
        answered_during_copy = not asking.is_alive()
        go_on.set()
        worker.join(30)
        asking.join(30)
        if asked and asked[0] is not None:
            v.release(asked[0])
        return answered_during_copy, asked

    answered, asked = during_a_copy(EtcView("/etc", HIDDEN_IN_ETC))
    assert answered and asked == [None]

    # liveness: one lock for both (the copy made under the lock `acquire` takes) blocks the caller
    blocking = EtcView("/etc", HIDDEN_IN_ETC)
    blocking._lock = blocking._making = threading.RLock()
    answered, asked = during_a_copy(blocking)
    assert not answered and asked and asked[0] is not None


MOUNTED_FILE = r"""
import json, os, subprocess, sys
from cockpit.host import etc_view
from cockpit.host.etc_view import EtcView
etc, outside, unwatched = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
subprocess.run(["mount", "--bind", outside, os.path.join(etc, "hosts.conf")], check=True)
if unwatched:  # the defence off: no watch of its own for a file mounted over one of /etc
    etc_view._mount_points_under = lambda root: []
v = EtcView(etc, [])
copy = v.acquire_refreshed()
copied = open(os.path.join(copy.path, "hosts.conf")).read()
v.release(copy)
with open(outside, "w") as f:  # as a container runtime updates the hosts file it mounted
    f.write("new-host\n")
print(json.dumps({"stale": v.acquire() is None, "copied": copied}))
"""


def test_a_file_mounted_over_one_of_etc_is_watched_on_its_own(fake_etc, host_tmp):
    """A container's /etc/hosts is a file mounted over /etc's: written through its own path, the
    directory's watch never hears of it. Run in a private mount namespace (unshare -m)."""
    outside = host_tmp / "hosts.outside"

    def attempt(unwatched: bool) -> dict:
        outside.write_text("mounted-host\n")
        p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", MOUNTED_FILE,
                            str(fake_etc), str(outside), "1" if unwatched else "0"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    seen = attempt(unwatched=True)  # liveness: the copy took the mounted file, then missed its change
    assert seen == {"stale": False, "copied": "mounted-host\n"}, seen
    seen = attempt(unwatched=False)
    assert seen == {"stale": True, "copied": "mounted-host\n"}, seen
