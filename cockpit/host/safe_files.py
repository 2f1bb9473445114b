"""The one way the cockpit's own process reads or writes a file inside a tree an agent shaped.

A worktree, a checkout of an agent's commit, or a scratch directory a sandboxed command
could write may hold symlinks (committed, or swapped in while we look) pointing at host
files. Every access here walks from a descriptor of the tree's root, one component at a
time, with O_NOFOLLOW: a symlink anywhere on the path fails (ELOOP) instead of being
followed, `..` and absolute paths are refused, so the I/O never leaves the tree.
A write replaces the directory entry (unlink, then O_CREAT|O_EXCL), never a file a link
points at; a read is capped.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from collections.abc import Sequence

_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def open_nofollow(root: Path, parts: Sequence[str], flags: int, *, mode: int = 0o666, make_parents: bool = False) -> int:
    """Open `root/parts...` without following a symlink in any component below `root`.

    Walks from a descriptor of `root`, opening each directory with O_DIRECTORY|O_NOFOLLOW
    relative to its parent, then the last component with O_NOFOLLOW. A component that is
    (or has just become) a symlink fails with ELOOP/ENOTDIR instead of being followed, so a
    symlink swapped in after a path check cannot redirect the I/O outside the worktree.
    With make_parents, missing directories are created on the way (mkdir never follows
    symlinks either). Where the OS lacks dir_fd support, only the last component is
    protected. Raises OSError; returns a descriptor the caller closes.
    """
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "no file name", str(root))
    flags |= _NOFOLLOW | _CLOEXEC
    if os.open not in os.supports_dir_fd or os.mkdir not in os.supports_dir_fd:  # pragma: no cover - not Linux/macOS
        path = root.joinpath(*parts)
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, mode)
    dir_fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                next_fd = _open_dir(name, dir_fd)
            except FileNotFoundError:
                if not make_parents:
                    raise
                try:
                    os.mkdir(name, 0o777, dir_fd=dir_fd)
                except FileExistsError:
                    pass  # raced with another creator; the open below decides
                next_fd = _open_dir(name, dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return os.open(parts[-1], flags, mode, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _open_dir(name: str, dir_fd: int) -> int:
    """Open directory `name` under dir_fd without following it; a symlink there raises ELOOP."""
    try:
        return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
    except NotADirectoryError:
        # Linux says ENOTDIR for O_DIRECTORY|O_NOFOLLOW on a symlink; say what it is.
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, "is a symlink", name) from None
        raise


class UnsafePath(OSError):
    """The path would leave the tree (absolute, `..`, a symlink on the way) or is not a regular file."""


def parts_inside(rel: str | os.PathLike[str]) -> list[str]:
    """`rel` as path components that cannot climb out of the tree; UnsafePath otherwise."""
    text = os.fspath(rel)
    if not text or "\0" in text:
        raise UnsafePath(errno.EINVAL, "empty path or NUL byte", text)
    p = PurePosixPath(text)
    if p.is_absolute():
        raise UnsafePath(errno.EPERM, "absolute path: only paths inside the tree", text)
    parts = [x for x in p.parts if x not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(errno.EPERM, "'..' would leave the tree", text)
    return parts


def read_bytes(root: Path, rel: str | os.PathLike[str], *, cap: int = 10_000_000) -> bytes:
    """The bytes of regular file `root/rel` (at most `cap`), never through a symlink."""
    parts = parts_inside(rel)
    try:
        fd = open_nofollow(Path(root), parts, os.O_RDONLY | _NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise UnsafePath(errno.ELOOP, "a symlink on the way: not followed", os.fspath(rel)) from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnsafePath(errno.EINVAL, "not a regular file", os.fspath(rel))
        return f.read(cap)


def read_text(root: Path, rel: str | os.PathLike[str], *, cap: int = 10_000_000) -> str:
    return read_bytes(root, rel, cap=cap).decode("utf-8", errors="replace")


def write_bytes(root: Path, rel: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Create or replace `root/rel` as a new regular file: whatever entry was there (a symlink
    to a host file included) is unlinked, never written through."""
    parts = parts_inside(rel)
    dir_parts, name = parts[:-1], parts[-1]
    dir_fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for comp in dir_parts:
            try:
                nxt = os.open(comp, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                os.mkdir(comp, 0o755, dir_fd=dir_fd)
                nxt = os.open(comp, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
            except (NotADirectoryError, OSError) as e:
                if isinstance(e, FileNotFoundError):
                    raise
                raise UnsafePath(errno.ELOOP, f"{comp!r} is a symlink or not a directory: not followed",
                                 os.fspath(rel)) from None
            os.close(dir_fd)
            dir_fd = nxt
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise UnsafePath(errno.EISDIR, "a directory is in the way", os.fspath(rel))
            os.unlink(name, dir_fd=dir_fd)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    finally:
        os.close(dir_fd)


def write_text(root: Path, rel: str | os.PathLike[str], text: str, *, mode: int = 0o644) -> None:
    write_bytes(root, rel, text.encode("utf-8"), mode=mode)


def is_regular(root: Path, rel: str | os.PathLike[str]) -> bool:
    """True if `root/rel` is a regular file reached without any symlink."""
    try:
        read_bytes(root, rel, cap=0)
        return True
    except OSError:
        return False
