"""Start-up reconciliation: after a crash or a `kill -9`, make the world agree with the store again.

The store is the truth (invariant 5, docs/architecture.md); what a kill can leave behind is everything
around it that is not written in the same transaction:
- a ledger row still 'reserved' (the call was in flight): it becomes 'unsettled', so
  its reservation keeps counting against the budgets, and is marked for the human;
- a scratch merge worktree (`worktrees/.merge/...`) of a merge that was being tested;
- the worktree of a task that is done (removed after the merge was recorded);
- a missing worktree of a task still open (recreated on its branch);
- a commit the builder made but the store never recorded (killed between `git commit`
  and the event): the branch goes back to the recorded commit, the changes stay in the
  worktree as uncommitted files, so the next commit records them and nothing is lost.

It runs once per process, before the orchestrator drives anything, under an exclusive
lock on the factory (`<store>.lock`): a second cockpit driving the same factory would
take the first one's in-flight calls for orphans, so it is refused instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..config import FactoryConfig
from ..domain.events import Event, Kind
from ..domain.tasks import TaskState
from ..store import Store, StoreError, reads
from .workspaces import GitError, Workspaces, _run_git, _worktrees, check_worktree, git

log = logging.getLogger(__name__)

_locks: dict[str, int] = {}  # lock path -> fd, held for the life of the process


def acquire_run_lock(store_path: Path) -> None:
    """Hold `<store>.lock` exclusively for the life of this process; StoreError if another process has it."""
    path = str(Path(store_path).resolve()) + ".lock"
    if path in _locks:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"{store_path}: another cockpit (pid {holder}) is running this factory. Use that one, "
                         "or stop it first; two would drive the same tasks.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _locks[path] = fd


async def recover(config: FactoryConfig, store: Store, workspaces: Workspaces) -> dict[str, Any]:
    """Reconcile the ledger and the worktrees with the store; record what was done as one event.

    It takes the orchestrator's parts, not the orchestrator: the engine calls recovery, never the reverse."""
    acquire_run_lock(config.store_path)
    done: dict[str, Any] = {"reservations_reconciled": [], "scratch_removed": 0, "worktrees_removed": [],
                            "worktrees_recreated": [], "commits_unrecorded": []}

    for call_id, task_id, product in await reads.reserved_calls(store):
        # what the call cost is unknown (it may have been billed): the reservation stays held
        await store.settle(call_id=call_id, task_id=task_id, product=product, usd=0.0, usage={}, complete=False)
        done["reservations_reconciled"].append(call_id)

    names = {p.name for p in config.products}
    for product in config.products:
        repo = config.product_path(product.name)
        if not (repo / ".git").exists():
            continue  # preflight names it; nothing here can be fixed
        try:
            done["scratch_removed"] += await _remove_scratch(workspaces, repo)
        except GitError as e:
            log.warning("recovery: scratch worktrees of %s: %s", product.name, e)
    for t in store.tasks():
        if t.product not in names:
            continue
        repo = config.product_path(t.product)
        path = workspaces.path_for(t.product, t.id)
        try:
            if t.state == TaskState.DONE:
                if path.exists():
                    await workspaces.remove(t.product, t.id, repo)
                    done["worktrees_removed"].append(t.id)
            elif t.state != TaskState.QUEUED:
                if not path.exists():
                    await workspaces.ensure(t.product, repo, config.product(t.product).main_branch, t.id)
                    done["worktrees_recreated"].append(t.id)
                if t.state == TaskState.BUILDING or (t.state == TaskState.BLOCKED and
                                                     t.resume_state == TaskState.BUILDING):
                    sha = await _undo_unrecorded_commit(path, t.commit, config.product(t.product).main_branch)
                    if sha:
                        done["commits_unrecorded"].append({"task": t.id, "commit": sha})
        except (GitError, OSError) as e:
            log.warning("recovery: worktree of %s: %s", t.id, e)

    if any(done.values()):
        await store.append(Event(kind=Kind.RECOVERED, actor="system", data=done))
    return done


async def _remove_scratch(workspaces: Workspaces, repo: Path) -> int:
    """Scratch merge worktrees are only ever in use while a merge is tested: at start-up none is."""
    root = os.path.realpath(workspaces.root / ".merge")
    found = {os.path.realpath(wt["worktree"]) for wt in await _worktrees(repo)}
    found = {p for p in found if p.startswith(root + os.sep)}
    if os.path.isdir(root):
        found |= {os.path.join(root, d) for d in os.listdir(root) if d.startswith(repo.name + "-")}
    for p in found:
        await git("worktree", "remove", "--force", p, cwd=repo, check=False)
        shutil.rmtree(p, ignore_errors=True)
    await git("worktree", "prune", cwd=repo, check=False)
    return len(found)


async def _undo_unrecorded_commit(worktree: Path, recorded: str | None, main_branch: str) -> str | None:
    """If HEAD is past the last commit the store knows, move the branch back and keep the files."""
    if not worktree.exists():
        return None
    check_worktree(worktree)
    head = await git("rev-parse", "HEAD", cwd=worktree)
    target = recorded or await git("merge-base", "HEAD", f"refs/heads/{main_branch}", cwd=worktree, check=False)
    if not target or head == target:
        return None
    rc, _, _ = await _run_git("merge-base", "--is-ancestor", target, head, cwd=worktree)
    if rc != 0:
        return None  # not a simple "one step ahead": leave it to the gate, which checks HEAD itself
    await git("reset", "--mixed", "--quiet", target, cwd=worktree)
    return head
