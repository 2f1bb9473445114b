"""The cockpit leaves nothing in /tmp: its temporary directories go at exit, and a killed one's at the next start.

Real processes: a child Python runs git through the hardened helper and makes the sandbox's files, with
TMPDIR pointed at a directory of the test's own, so what it leaves behind is exactly what the test sees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys
from cockpit.host import safe_git, sandbox, temp_dirs
safe_git.run_sync("--version", cwd=".")                     # git's empty HOME
sandbox._empty_file()                                # the file mounted over hidden files
sandbox.Sandbox(mode="off")._home_off()              # the private HOME of the unsandboxed mode
print(temp_dirs.run_dir(), flush=True)
print(json.dumps(sorted(os.listdir(temp_dirs.run_dir()))), flush=True)
if sys.argv[1] == "hang":
    import time; time.sleep(60)
"""


def child(tmp: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, mode], env=env, stdout=subprocess.PIPE, text=True)


def made(proc: subprocess.Popen) -> tuple[Path, list[str]]:
    run_dir = Path(proc.stdout.readline().strip())
    listing = json.loads(proc.stdout.readline())
    return run_dir, listing


def test_a_cockpit_process_removes_its_temporary_directories_at_exit(tmp_path):
    proc = child(tmp_path, "exit")
    run_dir, listing = made(proc)
    assert proc.wait(timeout=60) == 0
    # liveness: while it ran, the directories were there, under its run directory in our TMPDIR
    assert run_dir.parent == tmp_path
    assert {name.split("-")[0] for name in listing} >= {"git", "sandbox", "home"}, listing
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_a_killed_cockpits_directories_go_at_the_next_start_and_a_live_ones_stay(tmp_path):
    killed = child(tmp_path, "hang")
    killed_dir, _ = made(killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed_dir.is_dir()  # kill -9 runs no exit hook: it is left behind
    # read-only inside, as git's HOME is: the sweep must still get it out
    assert any(not p.stat().st_mode & 0o200 for p in killed_dir.iterdir())

    alive = child(tmp_path, "hang")
    alive_dir, _ = made(alive)
    try:
        assert not killed_dir.exists(), "the next cockpit did not sweep a dead process's directory"
        nxt = child(tmp_path, "exit")
        made(nxt)
        assert nxt.wait(timeout=60) == 0
        assert alive_dir.is_dir(), "a live process's directory was swept"
    finally:
        alive.send_signal(signal.SIGKILL)
        alive.wait(timeout=30)
    deadline = time.monotonic() + 5
    while alive_dir.exists() and time.monotonic() < deadline:  # removed by the next start only
        last = child(tmp_path, "exit")
        made(last)
        last.wait(timeout=60)
    assert list(tmp_path.iterdir()) == []
