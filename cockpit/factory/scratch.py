"""Throwaway checkouts: run something against one exact commit without touching anyone's worktree.

A breaker's reproduction and the count of tests on main run here, never in the
builder's tree: the copy is a detached git worktree of the product repo, made
writable for the sandboxed command, and removed afterwards whatever happened.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..host import safe_git
from .workspaces import git, remove_checkout, worktree_lock


@asynccontextmanager
async def throwaway_tree(repo: Path, root: Path, commit: str, *, label: str = "tree") -> AsyncIterator[Path]:
    """A detached checkout of `commit` under `root`, removed on exit."""
    path = Path(root) / f"{label}-{uuid.uuid4().hex[:12]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_git.guard_root(path.parent)
    async with worktree_lock(repo):
        await git("worktree", "add", "--detach", str(path), commit, cwd=repo)
    try:
        yield path
    finally:
        await remove_checkout(repo, path)


def scratch_dir(root: Path, name: str) -> Path:
    """A fresh, empty directory under `root` (outside every product tree) for an agent's own files."""
    path = Path(root) / name
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


async def clear_scratch(root: Path, repos: list[Path]) -> bool:
    """At start-up nothing uses the scratch area: drop what a crash left (checkouts included). True if any."""
    root = Path(root)
    if not root.exists():
        return False
    shutil.rmtree(root, ignore_errors=True)
    for repo in repos:
        if (Path(repo) / ".git").exists():
            async with worktree_lock(repo):
                await git("worktree", "prune", cwd=repo, check=False)
    return True
