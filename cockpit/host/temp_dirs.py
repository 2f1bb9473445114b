"""The cockpit's own temporary directories, all under one directory per process.

The sandbox's empty file and private homes, git's empty HOME and the reduced git configs the
sandbox binds are made once and reused for the process's life. Made with bare `mkdtemp`, every
run (and every test) left them behind in /tmp: thousands after a day's work. Here they live under
`<tmp>/cockpit-run-<pid>-<random>/`, removed when the process exits, and whatever a killed process
left is removed by the next cockpit that starts (its pid is gone).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
from pathlib import Path

PREFIX = "cockpit-run-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")

_lock = threading.Lock()
_root: Path | None = None
_root_pid: int | None = None


def _make_writable_and_retry(func, path, _exc) -> None:
    """rmtree's error hook: our dirs may be read-only (git's HOME is 0o555); make the parent writable, retry.

    Only a removal is retried as it was called: when rmtree could not open or list a directory (`os.open`,
    `os.scandir`, `os.lstat`: they need more than a path), that directory is removed whole, now that it may
    be read. Never raises: a leftover is better than a crash at exit (seen: `product add` exited 1 with a
    TypeError from retrying `os.open(path)`)."""
    try:
        parent = os.path.dirname(path)
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
        if func in (os.rmdir, os.remove, os.unlink):
            func(path)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
    except (OSError, TypeError, ValueError):
        pass


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory we made, read-only parts included; never follows a link out of it."""
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=_make_writable_and_retry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale(base: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the run directories of cockpit processes that no longer exist; returns what was removed.

    Only directories named by this module and owned by this user are touched; a live process's
    (another cockpit, a test worker) is left alone."""
    base = Path(base or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.match(entry.name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or _alive(int(m.group(1))):
            continue
        remove_tree(entry.path)
        removed.append(Path(entry.path))
    return removed


def run_dir() -> Path:
    """This process's directory for the cockpit's temporary files (made on first use; a fork gets its own)."""
    global _root, _root_pid
    with _lock:
        if _root is None or _root_pid != os.getpid() or not _root.is_dir():
            sweep_stale()
            _root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            _root_pid = os.getpid()
            atexit.register(_remove_at_exit, _root, _root_pid)
        return _root


def make_temp_dir(prefix: str) -> Path:
    """A fresh private directory under this process's run directory (mode 0o700)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=run_dir()))


def _remove_at_exit(root: Path, pid: int) -> None:
    if os.getpid() == pid:  # a forked child exiting must not remove its parent's files
        remove_tree(root)
