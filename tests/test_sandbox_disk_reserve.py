"""A command may not take the disk's last free space: the store keeps writing, the factory keeps running (C-10).

The attack: a builder's command writes without end into its worktree, on the disk that also holds the
factory's store. Filling a real disk in a test is out of the question, so each test sets the reserve just
under the disk's free space now: writing a few tens of MB then crosses it, exactly as the last GBs of a
full disk would. Liveness: with no reserve the same command writes everything it meant to. Real bwrap,
a real disk under /var/tmp, the real factory with the scripted model for the end-to-end case.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cockpit.config import load_factory
from cockpit.domain import TaskState
from cockpit.domain.events import Event, Kind
from cockpit.factory.commands import add_task
from cockpit.factory.runtime import open_factory
from cockpit.host.disk_reserve import DiskLow, reserve_of
from cockpit.host.sandbox import Sandbox
from factory_kit import write_factory

MB = 1 << 20
CHUNKS = 120  # MB the hostile command means to write, a chunk at a time (a fast `cat /dev/zero` fills a disk
# between two reads of its free space; a real disk's 1 GiB reserve leaves room for that, a test's 40 MB not)
WRITE = f"for i in $(seq {CHUNKS}); do head -c {MB} /dev/zero >> .cache.bin; sleep 0.02; done; echo wrote all"


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def disk_dir():
    """A directory on a real disk (not the sandbox's own /tmp), removed after the test."""
    d = Path(tempfile.mkdtemp(prefix="cockpit-disk-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_reserve_is_a_tenth_between_16_mib_and_1_gib():
    assert reserve_of(100 * MB) == 16 * MB and reserve_of(1000 * MB) == 100 * MB and reserve_of(1 << 40) == 1 << 30


async def test_a_command_that_writes_into_the_reserve_is_stopped(disk_dir):
    box = Sandbox("bwrap")
    if free_bytes(disk_dir) < 4 * CHUNKS * MB:
        pytest.fail(f"{disk_dir} has less than {4 * CHUNKS} MB free: this test needs room to show the attack")
    box.disk_reserve = 0  # liveness: no reserve, the whole of it is written
    res = await box.run(WRITE, cwd=disk_dir, writable=[disk_dir], timeout_s=60, output_cap_bytes=8000)
    assert res.ok and "wrote all" in res.output and (disk_dir / ".cache.bin").stat().st_size == CHUNKS * MB
    (disk_dir / ".cache.bin").unlink()
    box.disk_reserve = free_bytes(disk_dir) - 40 * MB  # 40 MB left above the reserve
    with pytest.raises(DiskLow) as got:
        await box.run(WRITE, cwd=disk_dir, writable=[disk_dir], timeout_s=60, output_cap_bytes=8000)
    e = got.value
    written = (disk_dir / ".cache.bin").stat().st_size
    # stopped before the end (other processes on the disk move the point it crosses: no lower bound)
    assert e.stopped and written < CHUNKS * MB, written
    assert e.low.path == str(disk_dir) and e.low.free < e.low.reserve
    assert f"the disk holding {disk_dir} has" in str(e) and "the command was stopped" in str(e)
    assert str(disk_dir / ".cache.bin") in str(e)  # the largest file, named for the human
    assert "wrote all" not in e.output


async def test_a_command_does_not_start_on_a_disk_already_at_its_reserve(disk_dir):
    box = Sandbox("bwrap")
    marker = disk_dir / "ran"
    box.disk_reserve = 0
    await box.run(f"touch {marker}", cwd=disk_dir, writable=[disk_dir], timeout_s=30, output_cap_bytes=8000)
    assert marker.exists(), "liveness: with room, the command runs"
    marker.unlink()
    box.disk_reserve = free_bytes(disk_dir) + (1 << 30)
    with pytest.raises(DiskLow) as got:
        await box.run(f"touch {marker}", cwd=disk_dir, writable=[disk_dir], timeout_s=30, output_cap_bytes=8000)
    assert not got.value.stopped and "the command was not started" in str(got.value)
    assert not marker.exists()


SCENARIOS = f"""
[[script]]
name = "hostile builder"
role = "builder"
match = ["Cache warm-up"]
[[script.turns]]
[[script.turns.tool_use]]
name = "run_command"
input = {{ command = "{WRITE}" }}
[[script.turns]]
text = "done"
"""


async def test_the_task_waits_for_the_human_and_the_factory_goes_on(tmp_path, disk_dir):
    cfg = load_factory(write_factory(disk_dir / "f", products=("calc",), scenarios=SCENARIOS))
    async with open_factory(cfg) as f:
        tid = (await add_task(f.store, product="calc", title="Cache warm-up")).task_id
        f.orchestrator.sandbox.disk_reserve = free_bytes(disk_dir) - 40 * MB
        await f.orchestrator.run(until_idle=True, timeout=120)
        t = f.store.task(tid)
        assert t.state == TaskState.BLOCKED and t.blocked_by == ["disk"], (t.state, t.blocked_by, t.block_detail)
        assert "the command was stopped" in t.block_detail and ".cache.bin" in t.block_detail
        assert "then retry the task" in t.block_detail
        # the store still writes: the human's note lands, nothing was lost
        await f.store.append(Event(kind=Kind.NOTE, actor="human:you", product="calc", task_id=tid,
                                   data={"text": "removing the cache file"}))
    wt = next(Path(cfg.worktrees_path).rglob(".cache.bin"))
    assert wt.stat().st_size < 80 * MB
    # a restart with the disk still at its reserve starts, and leaves the blocked task as it is
    async with open_factory(cfg) as f:
        f.orchestrator.sandbox.disk_reserve = free_bytes(disk_dir) + MB
        await f.orchestrator.run(until_idle=True, timeout=30)
        assert f.store.task(tid).state == TaskState.BLOCKED


async def test_a_writer_faster_than_the_watch_is_caught_when_it_ends_and_the_culprit_is_named(disk_dir):
    """`head -c 30M` is done before the first read of the free space: the check after it ends catches it. A
    command of another task that then meets the low disk names the largest files of every worktree."""
    box = Sandbox("bwrap")
    mine, other = disk_dir / "T2", disk_dir / "T1"
    mine.mkdir(), other.mkdir()
    fast = "head -c 31457280 /dev/zero > .cache.bin"
    box.disk_reserve = 0
    res = await box.run(fast, cwd=mine, writable=[mine], timeout_s=30, output_cap_bytes=8000)
    assert res.ok and (mine / ".cache.bin").stat().st_size == 30 * MB, "liveness: no reserve, all of it written"
    (mine / ".cache.bin").unlink()
    box.disk_reserve, box.disk_scope = free_bytes(disk_dir) - 10 * MB, disk_dir
    with pytest.raises(DiskLow) as got:
        await box.run(fast, cwd=mine, writable=[mine], timeout_s=30, output_cap_bytes=8000)
    assert got.value.ended or got.value.stopped, str(got.value)
    with pytest.raises(DiskLow) as honest:  # the next command, another task's, on the same disk
        await box.run("true", cwd=other, writable=[other], timeout_s=30, output_cap_bytes=8000)
    assert "was not started" in str(honest.value) and str(mine / ".cache.bin") in str(honest.value)
