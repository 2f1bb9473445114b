"""What of a toolchain root the sandbox must not show, found by scanning it, kept current by inotify.

The sandbox binds each toolchain root (`[factory] toolchains`, the cockpit's Python, the toolchain homes
images keep under /usr/local) whole and read-only. A name list of token files cannot know every place a
tool or an admin keeps one, and the cockpit often runs as root: so, inside each root, what is hidden is
 - a file (or socket, FIFO) "other" may not read, and a directory "other" may not search: private by its
   mode (`cargo login` writes credentials.toml 0600; a runner's token dir is 0700), whatever its name;
 - a file named like a registry token store (`SECRET_NAMES`: credentials.toml, .npmrc, .pypirc...) at any
   depth, whatever its mode (a 0644 .npmrc is still a token).
A root's own mode does not count (`/root/.cargo` lies under a 0700 home; the user named that root).

Scanning ~/.rustup (120,000 files) costs ~0.3 s, a Python install ~0.6 s: done in a worker thread, once,
then kept while an inotify watch on every directory scanned reports no change (one non-blocking read per
command). Where no watch can be set (no inotify, too few watches left) the scan made is kept and
`unavailable` says so; a root holding more than `MAX_HIDDEN` private entries is hidden whole (its mounts
would cost each command ~0.4 ms apiece), and `too_private` names it.
"""

from __future__ import annotations

import collections
import itertools
import os
import stat
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from .etc_view import _NoWatch, _Watch

# Where tools keep registry tokens and passwords, by file name: hidden at any depth of a toolchain root.
SECRET_NAMES = frozenset({
    "credentials.toml", ".credentials.toml", "credentials", "settings-security.xml", "npmrc", ".npmrc",
    ".yarnrc.yml", ".pypirc", ".netrc", ".git-credentials", ".vault-token", "auth.toml", "pip.conf",
    "pip.ini", ".pgpass", ".my.cnf",
})  # fmt: skip

MAX_HIDDEN = 64  # private entries in one root beyond which the whole root is hidden
MAX_ENTRIES = 1_000_000  # entries in all roots beyond which no scan is kept current (`unavailable`)


@dataclass(frozen=True)
class ToolchainScan:
    """One scan: (real path, is_dir) of each entry to hide, and the roots hidden whole."""

    hidden: tuple[tuple[str, bool], ...]
    too_private: tuple[str, ...]
    generation: int


class ToolchainView:
    """The private entries of a set of roots, shared by every sandbox that shows those roots."""

    def __init__(self, roots: Iterable[str], *, by_mode: bool = True, names: frozenset[str] = SECRET_NAMES) -> None:
        self.roots = _outermost(roots)
        self.by_mode = by_mode  # a test switches these off to show the secret then shows
        self.names = names
        self._lock = threading.Lock()  # a few assignments and one non-blocking read: fine on the event loop
        self._making = threading.Lock()
        self._watch: _Watch | None = None
        self._scan: ToolchainScan | None = None
        self._dirty = False
        self.unavailable: str | None = None
        self.builds = 0
        self.last_scan_s = 0.0

    def current(self) -> ToolchainScan | None:
        """The scan if nothing changed since it was made, else None: then `refreshed` (off the event loop)."""
        with self._lock:
            if self._scan is None:
                return None
            if self.unavailable is None and (self._dirty or self._watch is None or self._watch.changed()):
                self._scan = None
                return None
            return self._scan

    def refreshed(self) -> ToolchainScan:
        """An up-to-date scan, made now if needed (blocking: run it in a worker thread)."""
        with self._making:
            scan = self.current()
            if scan is not None:
                return scan
            started = time.perf_counter()
            watch: _Watch | None = None
            try:
                watch = _Watch()
            except _NoWatch as exc:
                self.unavailable = f"toolchain roots not watched: {exc}"
            hidden, too_private, unwatched = self._scan_roots(watch)
            if unwatched and watch is not None:
                watch.close()
                watch = None
                self.unavailable = f"toolchain roots not watched: {unwatched}"
            with self._lock:
                if self._watch is not None:
                    self._watch.close()
                self._watch = watch
                self._dirty = watch.changed() if watch is not None else False  # a write during the scan
                self.builds += 1
                self._scan = ToolchainScan(tuple(hidden), tuple(too_private), next(_generations))
                self.last_scan_s = time.perf_counter() - started
                return self._scan

    def _scan_roots(self, watch: _Watch | None) -> tuple[list[tuple[str, bool]], list[str], str | None]:
        hidden: list[tuple[str, bool]] = []
        too_private: list[str] = []
        count = [0]
        unwatched: str | None = None
        for root in self.roots:
            found: list[tuple[str, bool]] = []
            try:
                unwatched = self._scan_dir(watch, root, found, count, unwatched) or unwatched
            except _TooMany:
                found = [(root, True)]  # more than we can keep current: not shown at all
            if len(found) > MAX_HIDDEN:
                found = [(root, True)]
            if found == [(root, True)]:
                too_private.append(root)
            hidden += found
        return hidden, too_private, unwatched

    def _scan_dir(self, watch: _Watch | None, top: str, found: list[tuple[str, bool]], count: list[int],
                  unwatched: str | None) -> str | None:
        stack = [top]
        while stack:
            d = stack.pop()
            if watch is not None and unwatched is None:
                try:
                    watch.add(d)
                except PermissionError:
                    pass  # we cannot read it: neither can a command of ours
                except _NoWatch as exc:
                    unwatched = str(exc)
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for e in it:
                    count[0] += 1
                    if count[0] > MAX_ENTRIES:
                        raise _TooMany
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    mode = st.st_mode
                    if stat.S_ISLNK(mode):
                        continue  # a link reaches what it names, itself hidden or not shown
                    if stat.S_ISDIR(mode):
                        if self.by_mode and not mode & stat.S_IXOTH:
                            found.append((e.path, True))
                        else:
                            stack.append(e.path)
                    elif e.name in self.names or (self.by_mode and not mode & stat.S_IROTH):
                        found.append((e.path, False))
                    elif not stat.S_ISREG(mode) and self.by_mode:
                        found.append((e.path, False))  # a socket reaches a host daemon whatever the mount
        return unwatched


class _TooMany(Exception):
    pass


_generations = itertools.count(1)  # process-wide: a sandbox's view key tells scans of any view apart


def _outermost(roots: Iterable[str]) -> tuple[str, ...]:
    """Real, existing directories, none inside another (a root inside one already scanned adds nothing)."""
    real = sorted({os.path.realpath(r) for r in roots if os.path.isdir(r)})
    out: list[str] = []
    for r in real:
        if r != "/" and not any(r == o or r.startswith(o.rstrip("/") + "/") for o in out):
            out.append(r)
    return tuple(out)


_views: weakref.WeakValueDictionary[str, ToolchainView] = weakref.WeakValueDictionary()
_recent: collections.deque[ToolchainView] = collections.deque(maxlen=8)
_views_lock = threading.Lock()


def views_of(roots: Iterable[str]) -> list[ToolchainView]:
    """One view per root, shared in the process: a Python install is scanned once, not once per set of
    toolchains. A view no sandbox holds goes with its inotify instance (a user has ~128), but for the
    last few used."""
    out = []
    with _views_lock:
        for root in _outermost(roots):
            view = _views.get(root)
            if view is None:
                view = _views[root] = ToolchainView((root,))
            if view in _recent:  # least recently used first out: a Python every sandbox shows stays
                _recent.remove(view)
            _recent.append(view)
            out.append(view)
    return out


def combined(scans: Iterable[ToolchainScan]) -> ToolchainScan:
    """The scans of several roots as one (its generation tells any change of any of them)."""
    scans = list(scans)
    return ToolchainScan(tuple(h for s in scans for h in s.hidden), tuple(r for s in scans for r in s.too_private),
                         hash(tuple(s.generation for s in scans)))
