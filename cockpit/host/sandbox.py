"""Run code an agent wrote inside a real OS sandbox (bubblewrap), never behind path checks alone.

Invariant 6 (docs/architecture.md), as an allow-list: the sandbox sees only the system directories (/usr, /bin,
/sbin, /lib*, and a private copy of /etc minus its secrets: etc_view.py), the Python the cockpit runs on, the toolchains the
factory names (`[factory] toolchains`), the task's tree (writable, or read-only for a
reviewer) and, read-only, of the git directory that tree's `.git` points at only what
`git log`, `git diff main...HEAD` need (objects, refs, HEAD, the tree's index: GIT_DIR_ENTRIES;
configs reduced, no remote URLs; no credential store, hooks, logs, other worktrees). HOME
is an empty private tmpfs; the factory's store, rules, other products and the user's
home do not exist in there. No network, an environment built from nothing. Every command
gets a timeout, an output cap, and its whole process group killed when it ends, so
nothing it started in the background outlives it.

With no usable sandbox we refuse (`SandboxUnavailable`, naming the fix) unless the user
opted out in factory.toml (`sandbox = "off"`): then commands still run with the clean
environment, the timeout, the cap and the process-group kill, just not confined.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import syscall_filter, toolchain_view
from .disk_reserve import POLL_S, DiskLow, Low, largest_files, low_disk
from .etc_view import EtcCopy, EtcView, view_of
from .toolchain_view import ToolchainScan, ToolchainView
from .temp_dirs import make_temp_dir

log = logging.getLogger(__name__)

SandboxMode = Literal["bwrap", "off"]

_FIX = (
    "install it ('apt-get install bubblewrap') or set [factory] sandbox = \"off\" in factory.toml"
)

# Credentials a developer machine usually holds under $HOME: hidden whenever they exist.
DEFAULT_HIDDEN_IN_HOME = (
    ".ssh",
    ".aws",
    ".gnupg",
    ".config/gcloud",
    ".netrc",
    ".docker",
    ".kube",
    ".git-credentials",
    ".pypirc",
    # inside directories a toolchain entry shows whole (`~/.cargo`, `~/.m2`, `~/.gradle`...): the
    # registry tokens those tools keep next to their binaries and caches
    ".cargo/credentials.toml",
    ".cargo/credentials",
    ".m2/settings.xml",
    ".m2/settings-security.xml",
    ".gradle/gradle.properties",
    ".gem/credentials",
    ".bundle/config",
    ".npmrc",
    ".yarnrc.yml",
    ".config/gh",
    ".config/git/credentials",
    ".config/pypoetry/auth.toml",
    ".composer/auth.json",
    ".config/composer/auth.json",
    ".terraform.d/credentials.tfrc.json",
    ".vault-token",
    # what ~/.local/share and a home's top keep (shown only if a toolchain lies above them, which config
    # refuses; hidden all the same): keyrings, stored index passwords, kernel keys, shell histories
    ".local/share/keyrings",
    ".local/share/python_keyring",
    ".local/share/kwalletd",
    ".local/share/uv/credentials",
    ".local/share/jupyter/runtime",
    ".local/share/fish/fish_history",
    ".local/share/containers/auth.json",
    ".local/share/password-store",
    ".password-store",
    ".config/containers/auth.json",
    ".bash_history",
    ".zsh_history",
    ".python_history",
    ".psql_history",
    ".mysql_history",
)

# Inside each toolchain directory the sandbox shows (`[factory] toolchains`) and the toolchain homes
# system images keep under /usr/local (the rust image's CARGO_HOME=/usr/local/cargo, node's
# /usr/local/etc/npmrc): the files tools keep registry tokens in, emptied wherever they sit.
TOOLCHAIN_SECRETS = (
    "credentials.toml", "credentials", ".credentials.toml", "settings.xml", "settings-security.xml",
    "gradle.properties", "npmrc", ".npmrc", "etc/npmrc", ".yarnrc.yml", "auth.json", "auth.toml",
    "pip.conf", ".pypirc", ".netrc", ".git-credentials", ".gem/credentials", ".bundle/config",
    "conf/settings.xml", "config/credentials",
)  # fmt: skip
SYSTEM_TOOLCHAIN_HOMES = ("/usr/local/cargo", "/usr/local/rustup", "/usr/local", "/usr/local/lib/node_modules/npm",
                          "/usr/local/share/.cargo", "/usr/local/go", "/usr/local/gradle", "/usr/local/maven")

# Unix sockets ignore read-only mounts and network namespaces: /run holds the docker socket,
# D-Bus, and per-user agents (ssh, gpg, keyrings). A fresh tmpfs there closes that door.
DEFAULT_HIDDEN_SYSTEM = ("/run", "/var/run")

# The only host directories a sandboxed command sees (read-only), besides toolchains and its tree.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Files under /etc that hold secrets or machine credentials: an empty file (or dir) in their place.
# (Each one present is a mount, paid at every command's start: files only root can read and
# that hold no credential, such as /etc/sudoers, are left.)
HIDDEN_IN_ETC = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh", "/etc/ssl/private",
    "/etc/environment", "/etc/npmrc", "/etc/pip.conf", "/etc/netrc", "/etc/krb5.keytab", "/etc/docker",
    "/etc/containerd", "/etc/wireguard", "/etc/NetworkManager/system-connections",
)  # fmt: skip
# What git inside the sandbox needs: read-only (no optional index refresh), any owner.
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": "*"}

_BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def _autogroup_nice(nice: int) -> str:
    """Shell that gives the session it runs in the CPU niceness `nice` (see sched(7), "The autogroup feature").

    The kernel takes one such change every 100 ms from unprivileged callers (EAGAIN otherwise): a few tries.
    Nothing where the kernel has no autogroup. The command could put its session back to 0: this is for the
    scheduler's sake, not a bound (no one can go below 0 without privilege)."""
    return (f"if [ -w /proc/self/autogroup ]; then for _ in 1 2 3 4; do echo {nice} > /proc/self/autogroup "
            "&& break; sleep 0.1; done; fi 2>/dev/null; ")  # one line: the command's line numbers stay its own
# The largest file a sandboxed command may write (RLIMIT_FSIZE): a build's artefacts fit, a disk does not fill
# from one file. (Many files still can: left, see docs/security.md.)
MAX_FILE_BYTES = 2 << 30
# Every tmpfs in the view is memory, and the kernel's default size is half the RAM, each: one `cat /dev/zero >
# /tmp/x` in a few commands at once takes the host's memory. /tmp gets TMP_BYTES (factory.toml [limits]
# tmp_bytes), /dev/shm a fixed share, /run and the empty dirs that hide a path next to nothing; /dev itself
# is read-only (its nodes are what a command needs of it).
TMP_BYTES = 512 << 20
SHM_BYTES = 64 << 20
RUN_BYTES = 1 << 20
HIDING_BYTES = 64 << 10
# bwrap's own words when a mount's target is gone (the command never started)
_BWRAP_SETUP = re.compile(r"bwrap: Can't (?:mkdir parents for|create file at|find source path) (/[^\n]*?)(?:: [^\n]*)?")
_SANDBOX_HOME = "/tmp/home"
# After the main process exits, how long we wait for its output pipe to close (everything
# left in its group was just SIGKILLed, so this only matters for something that escaped).
_DRAIN_GRACE_S = 2.0


class SandboxUnavailable(Exception):
    """The sandbox cannot run here; the message names the fix."""


@dataclass(frozen=True)
class CommandResult:
    """What a command did: never an exception for a failing command, the caller decides."""

    command: str
    exit_code: int | None
    output: str
    truncated: bool
    timed_out: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class _CappedOutput:
    """Keeps the head and the tail of a stream within `cap` bytes, whatever flows through."""

    def __init__(self, cap: int) -> None:
        cap = max(int(cap), 2)
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:  # amortised trim: memory stays O(cap)
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.head_cap + self.tail_cap

    def text(self) -> str:
        if not self.truncated:
            raw = bytes(self.head + self.tail)
            return raw.decode("utf-8", errors="replace")
        tail = bytes(self.tail[-self.tail_cap :])
        cut = self.total - len(self.head) - len(tail)
        return (
            bytes(self.head).decode("utf-8", errors="replace")
            + f"\n[... {cut} bytes cut ...]\n"
            + tail.decode("utf-8", errors="replace")
        )


class _Collector(asyncio.SubprocessProtocol):
    """Feeds output straight into the cap (no unbounded buffer) and reports exit and EOF
    separately: a background child holding the pipe must not keep us waiting for the exit."""

    def __init__(self, cap: int, loop: asyncio.AbstractEventLoop) -> None:
        self.out = _CappedOutput(cap)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.out.add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.eof.done():
            self.eof.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.exited, self.eof):
            if not fut.done():
                fut.set_result(None)


_empty: Path | None = None


def _empty_file() -> str:
    """A private, empty, read-only regular file to mount over hidden files.

    `--ro-bind /dev/null FILE` hides too, but bwrap mounts binds `nodev`, so reading it
    fails with EACCES; an empty regular file reads as empty, which breaks fewer tools."""
    global _empty
    if _empty is None or not _empty.is_file() or _empty.stat().st_size:
        d = make_temp_dir("sandbox-")
        _empty = d / "empty"
        _empty.touch(mode=0o444)
    return str(_empty)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _probe_argv(bwrap: str, seccomp_fd: int | None) -> list[str]:
    return [
        bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--size", str(RUN_BYTES), "--tmpfs", "/tmp",
        "--setenv", "PATH", _BASE_PATH, *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
        "--", "true",
    ]  # fmt: skip


def _probe_fds() -> tuple[int, ...]:
    """The filter every command runs under, for the probe too (a kernel without seccomp fails it here)."""
    return (syscall_filter.readable_fd(),) if syscall_filter.supported() else ()


def _probe_failure(bwrap: str, rc: int, output: bytes) -> str:
    detail = output.decode("utf-8", errors="replace").strip() or f"exit code {rc}"
    if "seccomp" in detail.lower():
        return (f"bubblewrap ({bwrap}) cannot load the sandbox's seccomp filter ({detail}): without it a command "
                "could hold the host's memory in SysV shared memory or a nested namespace. Use a kernel with "
                "seccomp (CONFIG_SECCOMP_FILTER), or set sandbox = \"off\" in factory.toml's [factory] (code an "
                "agent wrote then runs unconfined)")
    if "--size" in detail:
        return (f"bubblewrap ({bwrap}) is too old to bound the size of a sandbox's /tmp ({detail}): every tmpfs "
                "would be allowed half the RAM. Install bubblewrap 0.6 or later, or set sandbox = \"off\" in "
                "factory.toml's [factory] (code an agent wrote then runs unconfined)")
    return (
        f"bubblewrap ({bwrap}) cannot create a sandbox here: {detail}. Allow unprivileged "
        f"user namespaces (e.g. sysctl kernel.unprivileged_userns_clone=1) or {_FIX}"
    )


_configs: dict[tuple[str, float, int], str] = {}


def _reduced_config(config: str) -> str | None:
    """A private copy of a repository's config holding only what git needs to read it
    (format version, extensions): remote URLs (tokens), credential helpers and the like stay out."""
    try:
        st = os.stat(config)
    except OSError:
        return None
    key = (config, st.st_mtime, st.st_size)
    if key in _configs and os.path.isfile(_configs[key]):
        return _configs[key]
    keep: list[str] = []
    section = ""
    try:
        with open(config, encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = raw.strip()
                if line.startswith("["):
                    section = line.strip("[]").split()[0].lower() if line.strip("[]").split() else ""
                    continue
                if not line or line.startswith(("#", ";")) or "=" not in line:
                    continue
                name, _, value = line.partition("=")
                name, value = name.strip().lower(), value.strip()
                if (section == "core" and name == "repositoryformatversion") or section == "extensions":
                    keep.append(f"\t{name} = {value}" if section == "core" else f"[extensions]\n\t{name} = {value}")
    except OSError:
        return None
    d = str(make_temp_dir("gitconfig-"))
    out = os.path.join(d, "config")
    core = [k for k in keep if not k.startswith("[extensions]")]
    ext = [k for k in keep if k.startswith("[extensions]")]
    with open(out, "w", encoding="utf-8") as f:
        f.write("[core]\n" + "".join(k + "\n" for k in core) + "\tbare = false\n" + "".join(k + "\n" for k in ext))
    os.chmod(out, 0o444)
    _configs[key] = out
    return out


# What read-only git (`git log`, `status`, `diff main...HEAD`, `show`) needs of a repository's common dir: only
# these entries are bound, each only if it is a plain file or directory (a link is left out: binding it would
# show whatever it names). Everything else a user or a tool keeps in `.git` (a credential store's
# `.git/credentials`, git-crypt's keys, hooks, logs and stashes' reflog, `FETCH_HEAD`, other worktrees' admin
# dirs, `modules/`: the submodules' whole git dirs, which no task tree checks out) does not exist in the
# sandbox. Of `info/` only what changes what git shows: the ignore rules, attributes, grafts.
GIT_DIR_ENTRIES = ("objects", "refs", "reftable", "packed-refs", "HEAD", "shallow",
                   "info/exclude", "info/attributes", "info/grafts")
# What git needs of the tree's own admin dir (`<common>/worktrees/<name>`): its HEAD and index (and a split
# index's shared part), the two files that tie it to the tree and the repository, per-worktree refs, its
# sparse-checkout patterns, and the heads an interrupted merge leaves (so `git status` tells it as the host
# does). Not its `logs/`, `modules/` (a submodule's git dir, remote URL included) or anything a tool put there.
GIT_ADMIN_ENTRIES = ("HEAD", "index", "commondir", "gitdir", "ORIG_HEAD", "MERGE_HEAD", "CHERRY_PICK_HEAD",
                     "REVERT_HEAD", "AUTO_MERGE", "refs", "reftable", "info/sparse-checkout")
_SHARED_INDEX = "sharedindex."
# git follows alternates this deep (`objects/info/alternates` of an alternate...): so do we
_MAX_ALTERNATE_DEPTH = 5


@dataclass(frozen=True)
class GitDirView:
    """One repository as a sandboxed tree sees it: the entries bound read-only, the configs covered."""

    common: str
    binds: tuple[tuple[str, str], ...]  # (source, where it shows): read-only
    covers: tuple[tuple[str, str], ...]  # (reduced copy, config it covers)


def git_dirs_of(trees: Iterable[str]) -> list[GitDirView]:
    """For each tree that is a linked worktree, what `git log` inside the sandbox needs of its repository:
    the common dir's GIT_DIR_ENTRIES, the object stores its alternates name, and the tree's own admin dir's
    GIT_ADMIN_ENTRIES, read-only, each config reduced. Its `.git` file is read as git reads it; a git dir
    inside the tree, or one that does not name this tree back, is ignored."""
    found: dict[str, tuple[list[str], list[str]]] = {}  # common -> (its admin dirs, configs)
    real_trees = [os.path.realpath(t) for t in trees]
    for tree in real_trees:
        dirs = _linked_dirs_of(tree)
        if dirs is None:
            continue
        admin, common = dirs
        admins, configs = found.setdefault(common, ([], _git_configs(common)))
        if admin not in admins:
            admins.append(admin)
            own = os.path.join(admin, "config.worktree")
            if _plain(own) == "file":
                configs.append(own)
    out = []
    for common, (admins, configs) in found.items():
        binds = [(p, p) for p in _entries(common, GIT_DIR_ENTRIES)]
        binds += _alternates(os.path.join(common, "objects"), real_trees)
        for admin in admins:
            binds += [(p, p) for p in _entries(admin, GIT_ADMIN_ENTRIES, shared_index=True)]
        covers = []
        for config in configs:
            reduced = _reduced_config(config)
            if reduced is None:  # unreadable or gone between the two looks: an empty file covers it
                reduced = _empty_file()
            covers.append((reduced, config))
        out.append(GitDirView(common, tuple(binds), tuple(covers)))
    return out


def _plain(path: str) -> str | None:
    """"file" or "dir" for a regular file or directory (a link is neither), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else None


def _entries(git_dir: str, names: Iterable[str], *, shared_index: bool = False) -> list[str]:
    """Those of `names` present in `git_dir` as plain files or directories, under a plain directory (no link
    on the way: `info` linked elsewhere is not followed); with `shared_index`, a split index's shared files."""
    out = []
    for name in names:
        path = os.path.join(git_dir, name)
        if os.sep in name and _plain(os.path.dirname(path)) != "dir":
            continue
        if _plain(path) is not None:
            out.append(path)
    if shared_index:
        try:
            out += [e.path for e in os.scandir(git_dir) if e.name.startswith(_SHARED_INDEX)
                    and e.is_file(follow_symlinks=False)]
        except OSError:
            pass
    return out


def _alternates(objects: str, trees: list[str]) -> list[tuple[str, str]]:
    """The object stores `objects/info/alternates` names (a clone made with --reference or --shared borrows
    its history from one), followed as git follows them: (the store, the path git opens) for each that is
    a directory named `objects`, outside the trees. Only that store: the repository around it (its config,
    credentials, hooks) stays out. A line git would unquote (starting with `"`) is not followed."""
    out: list[tuple[str, str]] = []
    seen = {os.path.realpath(objects)}
    todo = [(objects, 0)]
    while todo:
        store, depth = todo.pop()
        if depth >= _MAX_ALTERNATE_DEPTH:
            continue
        listing = os.path.join(store, "info", "alternates")
        if _plain(listing) != "file":
            continue
        try:
            with open(listing, encoding="utf-8", errors="replace") as f:
                lines = f.read(65536).splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", '"')):
                continue
            path = os.path.normpath(line if os.path.isabs(line) else os.path.join(store, line))
            real = os.path.realpath(path)
            if real in seen or os.path.basename(real) != "objects" or not os.path.isdir(real) \
                    or any(real == t or real.startswith(t.rstrip("/") + "/") for t in trees):
                continue
            seen.add(real)
            out.append((real, path))
            todo.append((real, depth + 1))
    return out


def _git_configs(common: str) -> list[str]:
    """The configs git reads in a common dir, which can hold a remote URL (a token) or a helper: its own and
    `config.worktree` (plain files only; the tree's own `config.worktree` is added by git_dirs_of)."""
    return [p for p in (os.path.join(common, "config"), os.path.join(common, "config.worktree"))
            if _plain(p) == "file"]


_RACY_GIT_NS = 1_000_000_000
# tree -> (its `.git`'s lstat, the admin dir and its stat, the common dir found, when it was read)
_checked: dict[str, tuple[tuple | None, str, tuple | None, str | None, int]] = {}


def _stat_key(path: str) -> tuple | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _common_dir_of(tree: str) -> str | None:
    dirs = _linked_dirs_of(tree)
    return dirs[1] if dirs else None


def _linked_dirs_of(tree: str) -> tuple[str, str] | None:
    """The checks below cost ~0.1 ms of reads and realpaths at every command; their verdict is kept
    while the tree's `.git` (any write to it changes its ctime, which no one can set back) and the
    admin dir it names are unchanged, and not trusted within a second of a change (coarse clocks)."""
    dot_git = os.path.join(tree, ".git")
    key = _stat_key(dot_git)
    seen = _checked.get(tree)
    if seen is not None and key is not None and seen[0] == key and _stat_key(seen[1]) == seen[2] \
            and key[-1] < seen[4] - _RACY_GIT_NS:  # key[-1]: its ctime
        return (seen[1], seen[3]) if seen[3] is not None else None
    read_at = time.time_ns()
    admin, common = _check_common_dir(tree)
    _checked[tree] = (key, admin, _stat_key(admin) if admin else None, common, read_at)
    return (admin, common) if common is not None else None


def _check_common_dir(tree: str) -> tuple[str, str | None]:
    """(admin dir named by the tree's `.git`, or "", and the common dir if every check passes):
    the tree's `.git` read exactly as git reads it (gitfile), so what is bound is what git uses."""
    from . import gitfile

    try:
        wt = gitfile.linked_worktree(tree)
    except gitfile.UnsafeGitFile:
        return "", None
    return wt.admin, wt.common


class Sandbox:
    """Runs shell commands confined by bubblewrap ("bwrap") or, when the user opted out, plainly ("off")."""

    # bwrap path -> None when the probe passed, else the reason it failed. Probed once.
    _probed: dict[str, str | None] = {}

    def __init__(
        self,
        mode: SandboxMode = "bwrap",
        *,
        hidden: Iterable[Path] = (),
        extra_path: Iterable[Path] = (),
        toolchains: Iterable[Path] = (),
        etc_view: EtcView | None = None,
        toolchain_view: ToolchainView | None = None,
    ) -> None:
        if mode not in ("bwrap", "off"):
            raise ValueError(f"sandbox mode must be 'bwrap' or 'off', not {mode!r}")
        self.mode: SandboxMode = mode
        home = Path.home()
        self.extra_path: tuple[Path, ...] = tuple(Path(p) for p in extra_path)
        self.toolchains: tuple[Path, ...] = tuple(Path(p).expanduser() for p in toolchains)
        self.hidden: tuple[Path, ...] = (
            tuple(Path(p) for p in hidden)
            + tuple(home / rel for rel in DEFAULT_HIDDEN_IN_HOME)
            + tuple(Path(p) for p in DEFAULT_HIDDEN_SYSTEM)
            # by name in every toolchain root, wherever it lives (another user's home, /usr/local)
            + tuple(Path(root, rel) for root in (*self.toolchains, *SYSTEM_TOOLCHAIN_HOMES)
                    for rel in TOOLCHAIN_SECRETS)
        )
        self._off_home: Path | None = None
        self._view: tuple[tuple, list[str], list[tuple[str, bool, bool]], str] | None = None
        self._view_read_ns = 0
        self._view_links: dict[str, str] = {}
        self._dirs: tuple[str, list[str]] | None = None
        # /etc without its secrets: one copy for the process, bound in /etc's place (one mount, not one per secret)
        self._etc = etc_view if etc_view is not None else view_of("/etc", HIDDEN_IN_ETC)
        # inside every shown root but the system dirs: what is private by its mode or named like a token store
        self._toolchain_view = toolchain_view
        self._scan: ToolchainScan | None = None
        self._roots_view: tuple[list[str], list[ToolchainView]] | None = None
        # the size of each command's /tmp (memory); None: no tmpfs is sized, /dev stays writable (tests show
        # what the limits stop)
        self.tmp_bytes: int | None = TMP_BYTES
        # bytes each writable directory's disk keeps free (None: a tenth of it, 16 MiB-1 GiB: disk_reserve)
        self.disk_reserve: int | None = None
        self.disk_scope: Path | None = None  # where the largest files are looked for when a disk is low
        # the kernel refuses SysV IPC memory and nested user namespaces (syscall_filter); False: tests show
        # what it stops
        self.syscall_filter: bool = syscall_filter.supported()

    # -- availability -------------------------------------------------------------------

    @staticmethod
    def check(mode: SandboxMode) -> None:
        """Raise SandboxUnavailable unless `mode` can run here (startup, `doctor`): synchronous."""
        if mode == "off":
            return
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(f"bubblewrap (bwrap) not found: {_FIX}")
        if bwrap not in Sandbox._probed:
            fds = _probe_fds()
            try:
                proc = subprocess.run(
                    _probe_argv(bwrap, fds[0] if fds else None), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, env={"PATH": _BASE_PATH}, timeout=30, pass_fds=fds,
                )  # fmt: skip
                Sandbox._probed[bwrap] = (
                    None if proc.returncode == 0 else _probe_failure(bwrap, proc.returncode, proc.stdout)
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                Sandbox._probed[bwrap] = _probe_failure(bwrap, -1, str(exc).encode())
            finally:
                for fd in fds:
                    os.close(fd)
        reason = Sandbox._probed[bwrap]
        if reason is not None:
            raise SandboxUnavailable(reason)

    @staticmethod
    async def _acheck() -> str:
        """The async twin of `check` for use on the event loop; returns bwrap's path."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(f"bubblewrap (bwrap) not found: {_FIX}")
        if bwrap not in Sandbox._probed:
            fds = _probe_fds()
            try:
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *_probe_argv(bwrap, fds[0] if fds else None), stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={"PATH": _BASE_PATH}, pass_fds=fds,
                    )  # fmt: skip
                finally:
                    for fd in fds:
                        os.close(fd)
                out, _ = await asyncio.wait_for(proc.communicate(), 30)
                Sandbox._probed[bwrap] = (
                    None if proc.returncode == 0 else _probe_failure(bwrap, proc.returncode or -1, out)
                )
            except (OSError, asyncio.TimeoutError) as exc:
                Sandbox._probed[bwrap] = _probe_failure(bwrap, -1, str(exc).encode())
        reason = Sandbox._probed[bwrap]
        if reason is not None:
            raise SandboxUnavailable(reason)
        return bwrap

    # -- running ------------------------------------------------------------------------

    def _env(self, env: Mapping[str, str] | None, home: str) -> dict[str, str]:
        """A clean environment, built from nothing: os.environ (and its secrets) never leaks in."""
        clean = {
            "PATH": self.command_path(),
            "HOME": home,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PYTHONDONTWRITEBYTECODE": "1",
            **_GIT_ENV,
        }
        for key, value in (env or {}).items():
            if not key or "=" in key or "\0" in key or "\0" in str(value):
                raise ValueError(f"bad environment variable name or value: {key!r}")
            clean[key] = str(value)
        return clean

    def command_path(self) -> str:
        """PATH inside: the cockpit's Python, extra dirs, each toolchain's bin/, then the system's."""
        tool_bins = [str(t / "bin") for t in self.toolchains if (t / "bin").is_dir()]
        return ":".join([os.path.dirname(sys.executable), *(str(p) for p in self.extra_path), *tool_bins, _BASE_PATH])

    def _bwrap_argv(
        self, bwrap: str, command: str, cwd: Path, writable: Iterable[Path], env: dict[str, str],
        readable: Iterable[Path] = (), etc: EtcCopy | None = None,
    ) -> list[str]:
        writable_real = [os.path.realpath(w) for w in writable]
        readable_real = [os.path.realpath(r) for r in readable]
        gitdirs = git_dirs_of([*writable_real, *readable_real])
        roots, hidden, bash = self._host_view()
        links = self._view_links
        bound = [*roots, *readable_real, *writable_real, *(shown for g in gitdirs for _, shown in g.binds)]

        bound_set, bound_under = set(bound), tuple(b.rstrip("/") + "/" for b in bound)
        trees_under = tuple(w.rstrip("/") + "/" for w in writable_real + readable_real)

        def under_bound(p: str) -> bool:
            return p in bound_set or p.startswith(bound_under)

        def inside_tree(p: str) -> bool:
            return p.startswith(trees_under)

        empty = _empty_file()  # checked once per command, not once per hidden file

        sized = self.tmp_bytes is not None

        def size(n: int) -> list[str]:
            return ["--size", str(n)] if sized else []

        def hide(entries: list[tuple[str, bool, bool]]) -> list[str]:
            out: list[str] = []
            for real, is_dir, _ in entries:
                out += [*size(HIDING_BYTES), "--tmpfs", real] if is_dir else ["--ro-bind", empty, real]
            return out

        # no capability inside, even for root: with them a command could `umount` what hides a secret
        argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
        # no file written in here grows past MAX_FILE_BYTES (soft and hard limit, and no capability to raise
        # it): one `cat /dev/zero > x` filled the disk and stopped the whole factory (adversary C-10)
        prlimit = shutil.which("prlimit") if MAX_FILE_BYTES else None
        if prlimit:
            argv = [prlimit, f"--fsize={MAX_FILE_BYTES}", "--", *argv]
        # The allow-list: system dirs and toolchains, read-only; a symlinked /bin stays a symlink.
        for r in roots:
            if r in links:
                argv += ["--symlink", links[r], r]
            elif r == "/etc" and etc is not None:
                argv += ["--ro-bind", etc.path, r]
            elif not (r == "/tmp" or r.startswith("/tmp/")):  # those come after /tmp's tmpfs
                argv += ["--ro-bind", r, r]
        argv += [
            "--dev", "/dev", *size(SHM_BYTES), "--tmpfs", "/dev/shm", "--proc", "/proc",
            *size(self.tmp_bytes or 0), "--tmpfs", "/tmp", "--dir", _SANDBOX_HOME,
            *size(RUN_BYTES), "--tmpfs", "/run", "--dir", "/var", "--symlink", "../run", "/var/run",
        ]  # fmt: skip
        # A toolchain under /tmp (a venv in a temp checkout, as in CI): the fresh tmpfs hid it.
        for r in roots:
            if r == "/tmp" or r.startswith("/tmp/"):
                argv += ["--ro-bind", r, r]
        # Hidden first, then the trees (a worktree under a hidden directory stays reachable),
        # then hidden paths that lie inside a tree (still hidden).
        # (only what is otherwise visible: the rest does not exist in here, and each mount costs start time)
        # with a copy of /etc in its place, /etc's own secrets are the copy's business (made without them)
        in_copy = etc is not None and "/etc" in roots and not os.path.islink("/etc")
        argv += hide([h for h in hidden if not inside_tree(h[0]) and under_bound(h[0])
                      and h[0] not in ("/run", "/var/run") and not (in_copy and h[2] and h[0].startswith("/etc/"))])
        # of the git directories the trees' `.git` files point at, what read-only git needs: read-only, config reduced
        for g in gitdirs:
            for source, shown in g.binds:
                argv += ["--ro-bind", source, shown]
            for reduced, config in g.covers:
                argv += ["--ro-bind", reduced, config]
        # a reviewer's or breaker's worktree: visible (it may lie under a hidden directory) but read-only
        for r in readable_real:
            argv += ["--ro-bind", r, r]
        for w in writable_real:
            argv += ["--bind", w, w]
        argv += hide([h for h in hidden if inside_tree(h[0])])
        # the scaffolding bwrap made for the binds (parents of the worktree...) is not writable
        argv += ["--remount-ro", "/", *(["--remount-ro", "/dev"] if sized else [])]
        argv += ["--chdir", os.path.realpath(cwd)]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += ["--", bash, "-c", command]
        return argv

    def _host_view(self) -> tuple[list[str], list[tuple[str, bool, bool]], str]:
        """(visible roots, hidden entries, bash): what every command's mounts are built from.

        Reading it costs ~0.25 ms of realpaths and lstats per command, a good part of a sandbox start;
        it is kept while nothing it was read from changed: the directories that hold each root, each
        hidden entry and bash (a file appearing, going or being replaced changes its directory's
        mtime, a directory swapped for another its inode). Never stale: a credential file created
        in /etc between two commands is hidden from the second."""
        key = self._view_key()
        if self._view is None or self._view[0] != key or self._racy(key):
            read_at = time.time_ns()
            self._view = (key, self.visible_roots(), self._hidden_entries(), shutil.which("bash") or "/bin/bash")
            # a symlinked /bin (merged /usr) stays a symlink in there: no mount
            self._view_links = {r: os.readlink(r) for r in self._view[1] if r in SYSTEM_DIRS and os.path.islink(r)}
            self._view_read_ns = read_at
        return self._view[1], self._view[2], self._view[3]

    _RACY_NS = 1_000_000_000

    def _racy(self, key: tuple) -> bool:
        """A directory changed within a second of the view's reading (a file system's mtime has coarse
        ticks, so a later change may keep the same mtime): read it again, as git does with a racy index."""
        return any(mtime is not None and mtime >= self._view_read_ns - self._RACY_NS for _, _, mtime in key)

    def _view_dirs(self) -> list[str]:
        """The directories the view is read from, sorted: fixed for this sandbox but for the host's PATH."""
        path = os.environ.get("PATH", "")
        if self._dirs is None or self._dirs[0] != path:
            dirs = {os.path.dirname(str(h)) for h in self.hidden} | {os.path.dirname(p) for p in HIDDEN_IN_ETC}
            dirs |= {str(p) for p in (*self.extra_path, *self.toolchains)} | set(SYSTEM_DIRS)
            dirs |= set(path.split(os.pathsep))  # where `which bash` looks
            self._dirs = (path, sorted(dirs))
        return self._dirs[1]

    def _view_key(self) -> tuple:
        key: list[tuple] = [("<toolchain scan>", self._scan.generation if self._scan else None, None)]
        for d in self._view_dirs():
            try:
                st = os.stat(d)
                key.append((d, st.st_ino, st.st_mtime_ns))
            except OSError:
                key.append((d, None, None))
        return tuple(key)

    def _hidden_entries(self) -> list[tuple[str, bool, bool]]:
        """(real path, is_dir, one of HIDDEN_IN_ETC) of what to hide that exists now."""
        hidden: list[tuple[str, bool, bool]] = []  # symlinks resolved
        seen: set[str] = set()
        etc = [p for p in HIDDEN_IN_ETC if os.access(p, os.R_OK)]  # unreadable to us stays unreadable in there
        for h, of_etc in (*((h, False) for h in self.hidden), *((Path(p), True) for p in etc)):
            real = os.path.realpath(h)
            if real in seen or not os.path.lexists(real) or real == "/":
                continue
            seen.add(real)
            hidden.append((real, os.path.isdir(real), of_etc))
        for real, is_dir in self._scan.hidden if self._scan else ():  # found real by the scan
            if real not in seen:
                seen.add(real)
                hidden.append((real, is_dir, False))
        return hidden

    def visible_roots(self) -> list[str]:
        """Host directories a command sees read-only: the system dirs, the cockpit's Python, the toolchains."""
        roots = [d for d in SYSTEM_DIRS if os.path.lexists(d)]
        py = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
              *(str(p) for p in self.extra_path), *(str(p) for p in self.toolchains)}
        for r in sorted({os.path.realpath(r) for r in py}):
            if os.path.isdir(r) and r != "/" and not any(r == s or r.startswith(s + "/") for s in roots):
                roots.append(r)
        return roots

    def exposure(self) -> list[str]:
        """What a sandboxed command sees, one line each: for `cockpit doctor` and the README."""
        if self.mode == "off":
            return ["sandbox off: commands see the whole machine as the cockpit's user"]
        return [
            "read-only: " + " ".join(self.visible_roots()) + " (/etc: a private copy without " + ", ".join(
                p for p in HIDDEN_IN_ETC if os.path.lexists(p)) + ")",
            "writable: the task's worktree (a reviewer's: read-only), a private /tmp, HOME=" + _SANDBOX_HOME
            + " (empty)",
            "git: of the product's .git only what read-only git needs (objects, refs, HEAD, info/exclude, this "
            "tree's HEAD and index; configs without remotes), read-only; no optional locks",
            "no capabilities, even for root; toolchains' registry tokens (~/.cargo/credentials.toml, "
            "~/.m2/settings.xml...) emptied; in every toolchain root, what is private by its mode (not o+r, "
            "a directory not o+x) or named like a token store (.npmrc, credentials.toml...) is hidden"
            + self._scan_notes(),
            "invisible: everything else: the factory (store, rules, factory.toml), other products and worktrees, "
            "the user's home (but for the toolchains above), /run, /var, /opt, /srv; no network; "
            "environment built from nothing",
        ]

    def _scan_notes(self) -> str:
        """What the last scan of the toolchain roots could not do, for `doctor`."""
        views = [self._toolchain_view] if self._toolchain_view else (self._roots_view[1] if self._roots_view else [])
        notes = []
        if self._scan and self._scan.too_private:
            notes.append("not shown at all (more than 64 private entries): " + " ".join(self._scan.too_private))
        for view in views:
            if view.unavailable:
                notes.append(view.unavailable + " (files made private since the first command are not seen)")
        return "".join(f"; {n}" for n in notes)

    def _home_off(self) -> str:
        # "off" mode has no private /tmp: a private HOME beats a shared, pre-creatable /tmp/home.
        if self._off_home is None or not self._off_home.is_dir():
            self._off_home = make_temp_dir("home-")
        return str(self._off_home)

    async def run(
        self,
        command: str,
        *,
        cwd: Path,
        writable: Iterable[Path],
        timeout_s: float,
        output_cap_bytes: int,
        env: Mapping[str, str] | None = None,
        readable: Iterable[Path] = (),
        nice: int = 0,
    ) -> CommandResult:
        """Run `bash -c command`; raises only SandboxUnavailable, a failing command is a result.

        `readable`: directories bound read-only, e.g. a worktree that lies under a hidden directory.
        `nice`: the CPU niceness of the whole command (0-19): an agent's own commands yield the CPU to the
        gates and the cockpit on a busy machine (they still take every cycle nobody else wants)."""
        writable = list(writable)
        # a disk a command writes to keeps its reserve: a full disk stops the store, so every product (C-10)
        watch = [str(p) for p in writable]
        low = low_disk(watch, self.disk_reserve)
        if low is not None:
            raise DiskLow(low, command, stopped=False, largest=await self._largest(low.path))
        if self.mode != "bwrap":
            argv = [shutil.which("bash") or "/bin/bash", "-c", command]
            return await self._execute(command, argv, self._env(env, self._home_off()), str(cwd), timeout_s,
                                       output_cap_bytes, watch=watch, nice=nice)
        bwrap = await self._acheck()
        self._scan = await self._toolchain_scan()
        etc = self._etc.acquire()
        if etc is None and self._etc.unavailable is None:  # /etc changed (or first command): copy it afresh
            etc = await self._refreshed_etc()
        try:
            argv = self._bwrap_argv(bwrap, command, cwd, writable, self._env(env, _SANDBOX_HOME), readable, etc)
            tries = 0
            while self._toolchain_view is None and (self._roots_view is None or self._view is None
                                                    or self._roots_view[0] != self._view[1]):
                # a root appeared (or went) since the last command: scanned before anything shows it
                tries += 1
                if tries > 3:  # roots that keep changing are never shown unscanned: this command does not run
                    return CommandResult(command, None, "cannot start: the toolchain directories keep changing "
                                         "(each change is scanned before a command sees it); try again", False,
                                         False, 0.0)
                self._scan = await self._toolchain_scan()
                argv = self._bwrap_argv(bwrap, command, cwd, writable, self._env(env, _SANDBOX_HOME), readable, etc)
            for attempt in (1, 2):
                # bwrap itself gets a minimal env too; the command's env is set by --setenv only.
                res = await self._execute(command, argv, {"PATH": _BASE_PATH}, "/", timeout_s, output_cap_bytes,
                                          watch=watch, filtered=self.syscall_filter, nice=nice)
                if attempt == 2 or not self._hidden_path_vanished(res, argv):
                    return res
                self._view = None  # read the host again (the view, the roots' scan): the command never started
                self._scan = await self._toolchain_scan()
                argv = self._bwrap_argv(bwrap, command, cwd, writable, self._env(env, _SANDBOX_HOME), readable, etc)
            return res
        finally:
            if etc is not None:
                self._etc.release(etc)

    async def _largest(self, path: str) -> list[tuple[int, str]]:
        """The largest files the human may remove: under `disk_scope` (every task's worktree: the one that filled
        the disk may be another task's) when it holds `path`, else under `path`; in a worker thread."""
        scope = str(self.disk_scope) if self.disk_scope is not None and Path(path).is_relative_to(self.disk_scope) \
            else path
        return await asyncio.to_thread(largest_files, scope)

    async def warm(self) -> None:
        """Probe bwrap and scan the shown toolchain roots now (the scan in a worker thread), so the first
        commands of a run do not each wait for it (~0.3-0.6 s on a Python install). Failing here is left for
        the first command to say."""
        if self.mode != "bwrap":
            return
        try:
            await self._acheck()
            self._scan = await self._toolchain_scan()
        except (SandboxUnavailable, OSError) as e:
            log.info("sandbox warm-up: %s", e)

    def _hidden_path_vanished(self, res: CommandResult, argv: list[str]) -> bool:
        """bwrap stopped before the command: a path it was to hide went away since the view was read (a
        toolchain's credentials file deleted between two commands). Read the view again and start once more."""
        m = _BWRAP_SETUP.fullmatch(res.output.strip())
        if res.exit_code != 1 or m is None:
            return False
        return m.group(1) in argv  # a path this command was to mount over

    def toolchain_roots(self, visible: list[str] | None = None) -> list[str]:
        """The shown roots scanned for private files: every visible root but the system dirs (their /usr/local
        toolchain homes included), each toolchain, the cockpit's Python."""
        visible = self.visible_roots() if visible is None else visible
        return [*(r for r in visible if r not in SYSTEM_DIRS), *SYSTEM_TOOLCHAIN_HOMES]

    async def _toolchain_scan(self) -> ToolchainScan:
        """The current scan of the shown roots: a non-blocking check each, a rescan in a worker thread after a
        change (the first command of a process waits for it: ~0.3 s for ~/.rustup, ~0.6 s for a Python)."""
        if self._toolchain_view is not None:
            views = [self._toolchain_view]
        else:
            # the roots the last command saw (`run` checks them against this command's, read once per command)
            visible = self._view[1] if self._view is not None else self._host_view()[0]
            if self._roots_view is None or self._roots_view[0] != visible:
                self._roots_view = (visible, toolchain_view.views_of(self.toolchain_roots(visible)))
            views = self._roots_view[1]
        scans = [v.current() for v in views]
        if any(s is None for s in scans):
            scans = await asyncio.to_thread(lambda: [v.refreshed() for v in views])
        return scans[0] if len(scans) == 1 else toolchain_view.combined(s for s in scans if s is not None)

    async def _refreshed_etc(self) -> EtcCopy | None:
        """A fresh copy of /etc, made in a worker thread; if we are cancelled meanwhile, it is let go."""
        made = asyncio.ensure_future(asyncio.to_thread(self._etc.acquire_refreshed))
        try:
            return await asyncio.shield(made)
        except asyncio.CancelledError:
            made.add_done_callback(lambda f: f.cancelled() or f.exception() or f.result() is None
                                   or self._etc.release(f.result()))
            raise

    async def _execute(self, command: str, argv: list[str], proc_env: dict[str, str], proc_cwd: str,
                       timeout_s: float, output_cap_bytes: int, *, watch: list[str] = (),
                       filtered: bool = False, nice: int = 0) -> CommandResult:
        """Start `argv` in its own process group, collect its output within the cap, kill what it leaves.

        `filtered`: bwrap's argv (ending `-- bash -c command`) gets the seccomp filter through a pipe.
        `nice`: started through coreutils' nice (every process it starts inherits it); without nice, as is."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        fds: tuple[int, ...] = ()
        if filtered:
            fds = (syscall_filter.readable_fd(),)
            argv = [*argv[:-4], "--seccomp", str(fds[0]), *argv[-4:]]
        if nice > 0 and (nice_bin := shutil.which("nice", path=_BASE_PATH)):
            argv = [nice_bin, "-n", str(min(nice, 19)), *argv]
            # where the kernel groups each session for the scheduler (autogroup), a process's nice only counts
            # inside its session: the command's own session (bwrap's --new-session) gets the same nice
            argv[-1] = _autogroup_nice(min(nice, 19)) + argv[-1]
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _Collector(output_cap_bytes, loop),
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=proc_cwd,
                env=proc_env,
                start_new_session=True,  # its own process group: killable as a whole
                pass_fds=fds,
            )
        except OSError as exc:  # e.g. cwd missing in "off" mode: a failed command, not a crash
            return CommandResult(command, None, f"cannot start: {exc}", False, False, time.monotonic() - started)
        finally:
            for fd in fds:
                os.close(fd)

        pgid = transport.get_pid()
        timed_out = False
        swept = False
        breach: list[Low] = []

        async def disk_watch() -> None:
            while True:
                await asyncio.sleep(POLL_S)
                low = low_disk(watch, self.disk_reserve)
                if low is not None:
                    breach.append(low)
                    _killpg(pgid)
                    return

        watcher = asyncio.create_task(disk_watch(), name="disk-watch") if watch else None
        try:
            try:
                await asyncio.wait_for(asyncio.shield(proto.exited), timeout_s)
            except asyncio.TimeoutError:
                timed_out = True
                _killpg(pgid)
                await proto.exited
            # Whatever it left in its group (a `cmd &`) dies with it. In bwrap mode the
            # sandbox's pid namespace is torn down when its init exits, which covers
            # processes that called setsid inside.
            _killpg(pgid)
            swept = True
            try:
                await asyncio.wait_for(asyncio.shield(proto.eof), _DRAIN_GRACE_S)
            except asyncio.TimeoutError:
                pass  # something escaped the group and holds the pipe: stop listening
        finally:
            if watcher is not None:
                watcher.cancel()
            if not swept:  # cancelled or failed midway: leave nothing running
                _killpg(pgid)
                # and see it go before returning (a stopped agent's caller checks), within a bound
                try:
                    await asyncio.wait_for(asyncio.shield(proto.exited), _DRAIN_GRACE_S)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
            transport.close()
        if not breach and watch and (low := low_disk(watch, self.disk_reserve)) is not None:
            breach.append(low)  # it ended (a fast writer meets ENOSPC between two reads) with the disk at its reserve
            ended = True
        else:
            ended = False
        if breach:
            raise DiskLow(breach[0], command, stopped=not ended, ended=ended, output=proto.out.text(),
                          largest=await self._largest(breach[0].path))
        return CommandResult(
            command=command,
            exit_code=None if timed_out else transport.get_returncode(),
            output=proto.out.text(),
            truncated=proto.out.truncated,
            timed_out=timed_out,
            duration_s=time.monotonic() - started,
        )
