"""/etc as the sandbox shows it: one private copy without its secrets, made once, kept current.

Hiding each credential file of /etc with a mount of its own cost ~0.4 ms at every command's
start (bwrap pays, per file, a bind, a read-only remount and a read of the growing mount
table); one copy bound in /etc's place costs one mount, like /etc itself. The copy holds
every entry of /etc but the secrets (`HIDDEN_IN_ETC`: an empty file or directory in their
place), symlinks as symlinks, each file's mode and times; and a file's content only when any
user may read it (it and every directory on its way: `o+r`, `o+x`): the cockpit often runs as
root, and a name list cannot know every credential an admin keeps as 0600 under /etc. It is never older than /etc: an
inotify watch on each of /etc's directories reports any change (a file written in place,
created, removed, renamed, its mode changed) before the writer's call returns, and the next
command's start sees the event and gets a new copy. A copy a running command holds stays
until that command ends.

Where a copy cannot be made (no inotify, too many watches, an /etc too big to copy), `acquire`
gives none, `unavailable` says why, and the sandbox hides the secrets with a mount each, as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from .temp_dirs import make_temp_dir, remove_tree

# inotify(7): every change to a directory's entries or to a file in it, not reads.
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_ONLYDIR, _IN_DONT_FOLLOW = 0x400, 0x800, 0x01000000, 0x02000000
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
         | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR | _IN_DONT_FOLLOW)  # fmt: skip

# Beyond these an /etc is not copied (a mount per secret is cheaper than a copy that big).
MAX_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 20_000


class _Watch:
    """One inotify instance: `changed()` is a single non-blocking read, cheap at every command."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _NoWatch(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self.fd = fd
        # instances are few per user (often 128): one dropped without close() gives its fd back
        self._closer = weakref.finalize(self, os.close, fd)

    def add(self, path: str, *, directory: bool = True) -> None:
        """Watch a directory (or a file); PermissionError for one we may not read, _NoWatch when none are left."""
        mask = _MASK if directory else _MASK & ~_IN_ONLYDIR
        if self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask) < 0:
            err = ctypes.get_errno()
            if err in (errno.EACCES, errno.EPERM):
                raise PermissionError(err, os.strerror(err), path)
            raise _NoWatch(f"inotify_add_watch {path}: {os.strerror(err)}")

    def changed(self) -> bool:
        """Whether any event (or a queue overflow) arrived since the last call; drains the queue."""
        seen = False
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return seen
                seen = True
            except BlockingIOError:
                return seen

    def close(self) -> None:
        self._closer()


class _TooBig(Exception):
    pass


class _NoWatch(Exception):
    pass


@dataclass(frozen=True)
class EtcCopy:
    """One copy: where it is, and the real paths under /etc it holds empty (not to hide again)."""

    path: str
    emptied: frozenset[str]


class EtcView:
    """The sanitized copy of one /etc (a directory and the names to empty in it), shared by all sandboxes."""

    def __init__(self, etc: str | os.PathLike[str], hidden: Iterable[str | os.PathLike[str]], *,
                 by_mode: bool = True) -> None:
        self.etc = str(etc)
        self.by_mode = by_mode  # a test switches it off to show a private file's content then shows
        self._hidden_names = tuple(str(h) for h in hidden)
        # `_lock` is only ever held for a few dict operations and one non-blocking read (it is
        # taken on the event loop); a copy is made under `_making`, in a worker thread.
        self._lock = threading.Lock()
        self._making = threading.Lock()
        self._watch: _Watch | None = None
        self._copy: EtcCopy | None = None  # the current copy, None when stale or never made
        self._dirty = False  # /etc changed while the current copy was being made
        self._users: dict[EtcCopy, int] = {}  # copy -> commands using it
        self._old: set[EtcCopy] = set()  # replaced copies, removed once no command uses them
        self.unavailable: str | None = None  # why no copy can be made here (then mounts hide the secrets)
        self.builds = 0
        self._failures = 0

    # -- what callers use -------------------------------------------------------------------

    def acquire(self) -> EtcCopy | None:
        """The copy, held for a command, if it is up to date; else None: then `acquire_refreshed`
        (off the event loop), unless `unavailable` says no copy can be made here. Never blocks."""
        with self._lock:
            if self._copy is not None and self._stale():
                self._retire(self._copy)
                self._copy = None
            if self._copy is not None:
                self._users[self._copy] = self._users.get(self._copy, 0) + 1
            return self._copy

    def acquire_refreshed(self) -> EtcCopy | None:
        """An up-to-date copy held for a command, made now if needed (blocking: ~0.1 s for a
        usual /etc; run it in a worker thread); None if none can be made (`unavailable` says why)."""
        with self._making:
            held = self.acquire()
            if held is not None or self.unavailable is not None:
                return held
            watch = None
            try:
                watch = _Watch()
                copy = self._make(watch)
            except (OSError, _TooBig, _NoWatch) as exc:  # this command hides the secrets by mounts
                if watch is not None:
                    watch.close()
                self._failures += 1
                if not isinstance(exc, OSError) or self._failures >= 3:
                    self.unavailable = f"no copy of {self.etc}: {exc}"
                return None
            self._failures = 0
            with self._lock:
                if self._watch is not None:
                    self._watch.close()
                self._watch = watch
                # our own reads raise no event: one here came from a writer during the copy, which
                # may have missed it; the copy serves the command that asked, the next gets a new one
                self._dirty = watch.changed()
                self._copy = copy
                self._users[copy] = self._users.get(copy, 0) + 1
                self.builds += 1
            return copy

    def release(self, copy: EtcCopy) -> None:
        """The command that held `copy` ended: a copy since replaced goes with its last user."""
        with self._lock:
            n = self._users.get(copy, 0) - 1
            if n > 0:
                self._users[copy] = n
                return
            self._users.pop(copy, None)
            if copy not in self._old:
                return
            self._old.discard(copy)
        _remove_soon(copy)

    # -- making the copy ----------------------------------------------------------------------

    def _stale(self) -> bool:
        return self._dirty or self._watch is None or self._watch.changed()

    def _retire(self, copy: EtcCopy) -> None:
        if self._users.get(copy):
            self._old.add(copy)
        else:
            _remove_soon(copy)

    def _make(self, watch: _Watch) -> EtcCopy:
        """Watch every directory first, then copy: a change during the copy marks it stale at once."""
        root = os.path.realpath(self.etc)
        if not os.path.isdir(root):
            raise OSError(errno.ENOTDIR, f"{self.etc} is not a directory")
        hidden = {os.path.realpath(h) for h in self._hidden_names}
        # a file mounted over one of /etc (a container's hosts, resolv.conf) is written through
        # another path: the directory's watch would not see it, its own watch does
        for mounted in _mount_points_under(root):
            watch.add(mounted, directory=False)
        dest = str(make_temp_dir("etc-"))
        try:
            emptied: set[str] = set()
            public = bool(os.stat(root).st_mode & stat.S_IXOTH) or not self.by_mode
            self._copy_dir(watch, root, os.path.join(dest, "etc"), hidden, emptied, [0, 0], public)
        except BaseException:
            remove_tree(dest)
            raise
        return EtcCopy(os.path.join(dest, "etc"), frozenset(emptied))

    def _copy_dir(self, watch: _Watch, src: str, dst: str, hidden: set[str], emptied: set[str],
                  count: list[int], public: bool) -> None:
        """`public`: every directory down to `src` may be searched by any user. Only a file any user may
        read there keeps its content: one an admin or a package made 0600/0640 (a runner's token, a
        cluster's admin.conf, apt's auth.conf) is a secret by its mode, whatever its name."""
        st = os.lstat(src)
        os.mkdir(dst, 0o700)
        try:
            watch.add(src)
            entries = sorted(os.scandir(src), key=lambda e: e.name)
        except PermissionError:  # a directory we cannot read stays one in there: empty
            entries = []
        for e in entries:
            count[0] += 1
            if count[0] > MAX_ENTRIES:
                raise _TooBig(f"more than {MAX_ENTRIES} entries")
            s, d = e.path, os.path.join(dst, e.name)
            try:
                est = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if s in hidden:
                emptied.add(s)
                if stat.S_ISDIR(est.st_mode):
                    os.mkdir(d, 0o755)
                else:
                    _write_empty(d, 0o444)
            elif stat.S_ISLNK(est.st_mode):
                os.symlink(os.readlink(s), d)
                continue
            elif stat.S_ISDIR(est.st_mode):
                searchable = bool(est.st_mode & stat.S_IXOTH) or not self.by_mode
                self._copy_dir(watch, s, d, hidden, emptied, count, public and searchable)
                continue
            elif stat.S_ISREG(est.st_mode) and self.by_mode and not (public and est.st_mode & stat.S_IROTH):
                emptied.add(s)  # private by its mode: there, empty, with its mode
                _write_empty(d, stat.S_IMODE(est.st_mode) & 0o777)
            elif stat.S_ISREG(est.st_mode):
                count[1] += est.st_size
                if count[1] > MAX_BYTES:
                    raise _TooBig(f"more than {MAX_BYTES // 2**20} MiB")
                _copy_file(s, d, est)
            else:
                continue  # FIFOs, sockets, devices: nothing a build reads from /etc
            os.utime(d, ns=(est.st_atime_ns, est.st_mtime_ns), follow_symlinks=False)
        os.chmod(dst, stat.S_IMODE(st.st_mode) & 0o777)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _remove_soon(copy: EtcCopy) -> None:
    """Remove a copy no command uses, in a thread: a thousand unlinks do not belong on the event loop."""
    threading.Thread(target=remove_tree, args=(os.path.dirname(copy.path),), daemon=True).start()


def _mount_points_under(root: str) -> list[str]:
    """Mount points strictly under `root`, from /proc/self/mountinfo (octal escapes decoded)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point.startswith(root.rstrip("/") + "/") and os.path.lexists(point):
            out.append(point)
    return out


def _write_empty(path: str, mode: int) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    os.chmod(path, mode)


def _copy_file(src: str, dst: str, st: os.stat_result) -> None:
    """Copy one regular file (never through a link, never blocking on one swapped for a FIFO).

    A file we cannot read is there empty, with its mode: unreadable content stays out."""
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    while chunk := os.read(fd, 1 << 20):
                        os.write(out, chunk)
            finally:
                os.close(fd)
    finally:
        os.close(out)
    os.chmod(dst, stat.S_IMODE(st.st_mode) & 0o777)


_views: dict[tuple[str, tuple[str, ...]], EtcView] = {}
_views_lock = threading.Lock()


def view_of(etc: str, hidden: Iterable[str]) -> EtcView:
    """The process's one view of `etc` with `hidden` emptied (made on first use)."""
    key = (etc, tuple(hidden))
    with _views_lock:
        if key not in _views:
            _views[key] = EtcView(etc, key[1])
        return _views[key]
