"""A full disk does not stop the store: its reserve file is given up so the writes that follow still land (C-10).

The disk is a real 24 MB tmpfs that bubblewrap mounts for a child process (no root needed): the child
opens the store on it, fills the rest of the disk with a file, then appends what a factory appends next
(the block that tells the human, notes). Liveness: with no reserve the same appends fail with "database
or disk is full" and nothing of them is recorded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, os, sys
sys.path.insert(0, sys.argv[1])
from cockpit.store import store as S
from cockpit.store import Store
from cockpit.domain.events import Event, Kind
S.BALLAST_BYTES = int(sys.argv[2])
DATA = sys.argv[3]

async def main():
    st = await Store.open(DATA + "/cockpit.db")
    tid = (await st.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p",
                                 data={"title": "a"}))).task_id
    print("reserve kept:", st.ballast.exists())
    fd = os.open(DATA + "/fill", os.O_WRONLY | os.O_CREAT)  # everything the disk has left, to the last page
    for size in (1 << 20, 4096, 1):
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
    os.close(fd)
    landed = 0
    try:
        for i in range(20):
            await st.append(Event(kind=Kind.NOTE, actor="system", product="p", task_id=tid,
                                  data={"text": "the disk is full " + "x" * 4000}))
            landed += 1
    except Exception as e:
        print("FAILED:", str(e)[:300])
    print("landed:", landed)
    await st.close()
    st = await Store.open(DATA + "/cockpit.db")  # what landed is there after a restart
    print("after restart:", len([t for t in st.tasks()]), "task,", st.last_event_id, "events")
    await st.close()

asyncio.run(main())
"""


def run_child(tmp_path: Path, reserve: int) -> str:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.fail("bwrap is needed to mount a small disk for this test (make test installs it)")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    disk = tmp_path / f"disk-{reserve}"
    disk.mkdir()
    # everything read-only as it is (the checkout and its venv may lie under /tmp), the small disk on top
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--size", str(24 << 20), "--tmpfs", str(disk), "--",
            sys.executable, str(script), str(ROOT), str(reserve), str(disk)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return out.stdout + out.stderr


def test_a_full_disk_gives_up_the_reserve_and_the_writes_land(tmp_path):
    without = run_child(tmp_path, 0)
    assert "reserve kept: False" in without and "FAILED:" in without and "disk is full" in without, without
    assert "landed: 20" not in without, "liveness: with no reserve the full disk stops the writes"
    with_reserve = run_child(tmp_path, 8 << 20)
    assert "reserve kept: True" in with_reserve and "FAILED" not in with_reserve, with_reserve
    assert "landed: 20" in with_reserve and "gave up its 8 MB reserve" in with_reserve, with_reserve
    assert "after restart: 1 task, 21 events" in with_reserve, with_reserve
