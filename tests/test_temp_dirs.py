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


def test_two_cockpits_sweeping_one_dead_directory_at_once_both_start(tmp_path):
    """Seen in CI: two `cockpit product add` started together both swept a dead process's directory; one's
    rmtree found an entry the other had just removed, its error hook retried `os.open(path)` without flags,
    and the command died at start with a TypeError. The hook now never raises, for any failing call."""
    from cockpit.host import temp_dirs

    gone = tmp_path / "gone"
    for func in (os.open, os.lstat, os.scandir, os.rmdir, os.unlink):  # each call rmtree may report
        temp_dirs._make_writable_and_retry(func, str(gone), FileNotFoundError())
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "f").write_text("x")
    (locked / "inner").chmod(0)
    temp_dirs._make_writable_and_retry(os.open, str(locked / "inner"), PermissionError())
    assert not (locked / "inner").exists()  # could not be opened: made readable and removed whole
    # and the race itself, many times over: a dead process's deep directory swept by four at once
    import threading

    for round_ in range(5):
        dead = tmp_path / f"{temp_dirs.PREFIX}999999{round_}-x"
        for i in range(40):
            (dead / f"d{i}" / "e").mkdir(parents=True)
            (dead / f"d{i}" / "e" / "f").write_text("x")
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_sweep, args=(tmp_path, errors)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and not dead.exists()


def _sweep(base: Path, errors: list[BaseException]) -> None:
    from cockpit.host import temp_dirs

    try:
        temp_dirs.sweep_stale(base)
    except BaseException as e:  # noqa: BLE001 - the point is that nothing escapes
        errors.append(e)
