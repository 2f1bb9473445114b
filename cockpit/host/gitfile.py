"""Read a linked worktree's `.git` file exactly as git does, and vouch for the git dir it names.

An agent writes its worktree, `.git` file included. The cockpit's own git (outside the
sandbox) must never open a git dir the agent made: its config would name filter or
fsmonitor programs that git runs on the host. A parser that reads the file differently
from git is a hole (two spaces after `gitdir:`, a symlink in the path: the check sees the
genuine admin dir, git sees the agent's), so this module parses like git's
`read_gitfile_gently` (the prefix `gitdir: `, the rest verbatim but for trailing CR/LF),
refuses any path that enters the worktree, and only accepts the admin dir git itself
keeps for this worktree: `<common>/worktrees/<name>`, outside the tree, naming it back.
Callers then hand git that admin dir explicitly (GIT_DIR), so what the `.git` file says
after the check no longer matters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import safe_files

PREFIX = b"gitdir: "


class UnsafeGitFile(Exception):
    """The `.git` file of a tree is not the link git wrote for a linked worktree."""


@dataclass(frozen=True)
class LinkedWorktree:
    top: str  # the worktree, resolved
    admin: str  # <common>/worktrees/<name>: git's per-worktree dir (HEAD, index)
    common: str  # the repository's git dir (objects, refs, config)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def named_dir(top: str, raw: bytes) -> str:
    """The path git takes from a `.git` file's bytes, joined to the tree like git joins it."""
    if not raw.startswith(PREFIX):
        raise UnsafeGitFile(".git does not start with 'gitdir: ' (git would not read it as a link)")
    body = raw[len(PREFIX):]
    while body and body[-1:] in (b"\n", b"\r"):
        body = body[:-1]
    if not body or b"\0" in body or b"\n" in body:
        raise UnsafeGitFile(".git does not hold a single gitdir line")
    path = os.fsdecode(body)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(top, path))


def linked_worktree(tree: str | Path) -> LinkedWorktree:
    """The vouched-for git dirs of the linked worktree `tree`, or UnsafeGitFile saying why not."""
    top = os.path.realpath(tree)
    dot_git = os.path.join(top, ".git")
    if os.path.islink(dot_git) or not os.path.isfile(dot_git):
        raise UnsafeGitFile(".git is not the file a linked worktree has")
    try:
        raw = safe_files.read_bytes(Path(top), ".git", cap=4096)
    except OSError as exc:
        raise UnsafeGitFile(f"cannot read .git: {exc}") from exc
    named = named_dir(top, raw)
    # lexically inside the tree: any symlink on the way is the agent's (a kernel `..` after it
    # goes where the text does not); outside the tree nothing on the path is the agent's
    if _inside(named, top):
        raise UnsafeGitFile(f".git points inside the worktree ({named})")
    admin = os.path.realpath(named)
    if _inside(admin, top):
        raise UnsafeGitFile(f".git points inside the worktree ({admin})")
    if os.path.basename(os.path.dirname(admin)) != "worktrees":
        raise UnsafeGitFile(f"{admin} is not a worktree git dir (<repository>/worktrees/<name>)")
    try:
        back = Path(admin, "gitdir").read_text(errors="replace").strip()
        rel = Path(admin, "commondir").read_text(errors="replace").strip()
    except OSError as exc:
        raise UnsafeGitFile(f"{admin} is not a worktree git dir: {exc}") from exc
    if os.path.realpath(os.path.join(admin, back)) != dot_git:
        raise UnsafeGitFile(f"{admin} belongs to another worktree ({back})")
    common = os.path.realpath(os.path.join(admin, rel))
    if _inside(common, top) or not os.path.isdir(common):
        raise UnsafeGitFile(f"{admin} names a repository inside the worktree or none ({common})")
    # an admin dir could name any repository as its common dir: only the one it lives in counts
    if os.path.dirname(admin) != os.path.join(common, "worktrees"):
        raise UnsafeGitFile(f"{admin} does not belong to the repository it names ({common})")
    return LinkedWorktree(top=top, admin=admin, common=common)
