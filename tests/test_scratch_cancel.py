"""A throwaway checkout cancelled mid-use (an agent stopped, the cockpit quitting) cleans up without waiting.

Seen at quit, one run in two at load ~4 (`cockpit demo` in tmux, q while gates ran): two gate runs of one
product, both cancelled inside the checkout's cleanup, waited on the repository's worktree lock for good, and
asyncio.run's final cancellation waited on them (the process stayed after its screen closed). The cleanup of a
cancelled checkout (workspaces.remove_checkout: a gate's checkout and the merge queue's alike) now awaits
nothing: it removes the files and leaves the admin entry to git's next prune.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cockpit.factory import workspaces
from cockpit.factory.scratch import throwaway_tree
from cockpit.factory.workspaces import Workspaces, git, worktree_lock
from gitrepo import make_repo, run_git


async def _cancel_inside_a_checkout_while_the_lock_is_held(repo: Path, root: Path) -> tuple[bool, list[Path]]:
    """A checkout is in use; another holder keeps the worktree lock; the checkout's task is cancelled.
    Returns (the task ended within 3 s, the checkouts left on disk)."""
    inside = asyncio.Event()

    async def use() -> None:
        async with throwaway_tree(repo, root, "HEAD", label="gate"):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(use())
    await inside.wait()
    lock = worktree_lock(repo)
    await lock.acquire()  # the stuck holder: never released while the task winds down
    try:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3)
        ended = task in done
    finally:
        lock.release()
        if not task.done():
            await asyncio.wait({task}, timeout=10)
    return ended, [p for p in root.iterdir() if p.name.startswith("gate-")]


async def test_a_cancelled_checkout_never_waits_on_the_worktree_lock(tmp_path):
    repo = make_repo(tmp_path / "repo")
    ended, left = await _cancel_inside_a_checkout_while_the_lock_is_held(repo, tmp_path / "scratch")
    assert ended, "the cancelled checkout waited on the worktree lock"
    assert left == []  # its files are gone at once
    await git("worktree", "prune", cwd=repo)  # what the next add/remove (or the next start) does
    assert len(run_git(repo, "worktree", "list").splitlines()) == 1  # only the repository itself


async def test_liveness_the_old_cleanup_waits_on_the_lock(tmp_path, monkeypatch):
    """The same with the cleanup that awaits the lock and git even when cancelled: the task does not end."""

    class NeverCancelling:
        def __init__(self, task: asyncio.Task) -> None:
            self._task = task

        def cancelling(self) -> int:
            return 0

    real = asyncio.current_task
    monkeypatch.setattr(workspaces.asyncio, "current_task", lambda: NeverCancelling(real()))
    repo = make_repo(tmp_path / "repo")
    ended, _ = await _cancel_inside_a_checkout_while_the_lock_is_held(repo, tmp_path / "scratch")
    assert not ended


async def test_the_merge_queues_checkout_cancelled_in_its_cleanup_never_waits_either(tmp_path):
    """The merge queue discards its merge checkout in a `finally`: cancelled there, the same rule holds."""
    repo = make_repo(tmp_path / "repo")
    path = tmp_path / "scratch" / "merge-1"
    run_git(repo, "worktree", "add", "--detach", str(path), "HEAD")
    started = asyncio.Event()

    async def land() -> None:
        try:
            started.set()
            await asyncio.sleep(60)  # testing the merge
        finally:
            await Workspaces(tmp_path / "wt").discard(repo, path)

    task = asyncio.create_task(land())
    await started.wait()
    lock = worktree_lock(repo)
    await lock.acquire()
    try:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3)
    finally:
        lock.release()
    assert task in done, "the cancelled merge checkout waited on the worktree lock"
    assert not path.exists()


async def test_an_uncancelled_checkout_still_goes_through_git(tmp_path):
    repo = make_repo(tmp_path / "repo")
    async with throwaway_tree(repo, tmp_path / "scratch", "HEAD") as tree:
        assert (tree / "calc.py").exists()
        assert str(tree) in run_git(repo, "worktree", "list")
    assert not tree.exists()
    assert str(tree) not in run_git(repo, "worktree", "list")  # removed and pruned, not left for later


pytestmark = pytest.mark.timeout(60)
