"""After `q` the cockpit's process ends within its grace time even when something winding down hangs, and its
exit hooks still run (its temporary directories go). A real child process that hangs on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, threading, time
from cockpit import cli
from cockpit.host import temp_dirs
print(temp_dirs.run_dir(), flush=True)
if sys.argv[1] == "watchdog":
    cli._exit_after(1.0)
threading.Thread(target=time.sleep, args=(3600,)).start()  # a non-daemon thread: the interpreter waits for it
"""


def child(tmp: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, mode], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_hang_after_quit_ends_within_the_grace_and_the_exit_hooks_run(tmp_path):
    # liveness: without the watchdog the same process is still there long after
    (tmp_path / "a").mkdir()
    hung = child(tmp_path / "a", "none")
    try:
        hung.wait(timeout=5)
        raise AssertionError("the hang did not hang: the test would prove nothing")
    except subprocess.TimeoutExpired:
        pass
    finally:
        hung.kill()
        hung.wait()

    (tmp_path / "b").mkdir()
    proc = child(tmp_path / "b", "watchdog")
    run_dir = Path(proc.stdout.readline().strip())
    assert run_dir.is_dir()
    assert proc.wait(timeout=30) == 0
    assert "still shutting down" in proc.stderr.read()
    assert not run_dir.exists(), "the exit hooks did not run: the temporary directories were left"
