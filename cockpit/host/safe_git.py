"""The one way the cockpit's own process runs git: hardened against trees an agent shaped.

The cockpit runs git outside the sandbox, as the user. Git reads config and runs programs
it names (filters, textconv, external diff, fsmonitor, hooks, credential helpers, ssh) from
the system, the user's global config, the repository, and any submodule or nested
repository it descends into. An agent controls what it commits, so every call here:

- reads no system or global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null, an
  empty private HOME and XDG_CONFIG_HOME) and no system attributes;
- overrides on the command line whatever can run a program (hooks, fsmonitor, external
  diff, pager, editor, askpass, credential helpers, ssh, gpg) and never descends into
  submodules (`diff.ignoreSubmodules=all`, `submodule.recurse=false`);
- allows no transport protocol (`protocol.allow=never`: nothing is fetched, no `ext::`);
- ignores replace refs (GIT_NO_REPLACE_OBJECTS) so an object means what its id says;
- starts from an environment built from nothing (an inherited GIT_DIR, GIT_INDEX_FILE or
  GIT_CONFIG_PARAMETERS would point git elsewhere or add config);
- in a linked worktree (an agent's, a scratch checkout) never lets git read the `.git` file:
  the admin dir it names is vouched for (gitfile) and handed to git as GIT_DIR, so a `.git`
  rewritten before or after the check cannot point git at a repository the agent made;
- reads the repository's config first (`git config --list`, which runs nothing) and refuses
  one that includes another file (an include can name a file of the tree, which agents write
  through a merge), and empties every filter and merge driver it defines, so no program a
  config names runs on content an agent shaped (filter drivers run at add, status, checkout
  and merge; `.gitattributes` picks them by name).

Callers prefer commit objects (rev-parse, cat-file, diff-tree, ls-tree) over an agent's
worktree; diffs pass --no-ext-diff --no-textconv. docs/security.md states the rule.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .gitfile import UnsafeGitFile, linked_worktree
from .temp_dirs import make_temp_dir

# Config that must win over the repository's (command-line config has the last word).
HARDENED_CONFIG: tuple[str, ...] = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.untrackedCache=false",
    "-c", "core.pager=cat",
    "-c", "core.editor=true",
    "-c", "sequence.editor=true",
    "-c", "core.askPass=true",
    "-c", "core.sshCommand=false",
    "-c", "core.gitProxy=",
    "-c", "core.attributesFile=/dev/null",
    "-c", "core.alternateRefsCommand=",
    "-c", "credential.helper=",
    "-c", "diff.ignoreSubmodules=all",
    "-c", "status.submoduleSummary=false",
    "-c", "submodule.recurse=false",
    "-c", "fetch.recurseSubmodules=false",
    "-c", "protocol.allow=never",
    "-c", "protocol.file.allow=never",
    "-c", "protocol.ext.allow=never",
    "-c", "commit.gpgSign=false",
    "-c", "tag.gpgSign=false",
    "-c", "gpg.program=false",
    "-c", "gpg.openpgp.program=false",
    "-c", "gpg.ssh.program=false",
    "-c", "gpg.x509.program=false",
    "-c", "gpg.ssh.defaultKeyCommand=false",
    "-c", "log.showSignature=false",
    "-c", "diff.external=",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
    "-c", "uploadpack.packObjectsHook=",
)  # fmt: skip

_home: str | None = None


def empty_home() -> str:
    """A private, empty, read-only directory used as git's HOME and XDG_CONFIG_HOME."""
    global _home
    if _home is None or not os.path.isdir(_home) or os.listdir(_home):
        _home = str(make_temp_dir("git-home-"))
        os.chmod(_home, 0o555)
    return _home


def hardened_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """git's environment, from nothing: no inherited GIT_*, no user or system config."""
    home = empty_home()
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C",  # stable, English messages
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "GIT_EDITOR": "true",
        "GIT_PAGER": "cat",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": "",
    }
    for key, value in (extra or {}).items():
        if key in ("GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "HOME", "XDG_CONFIG_HOME") \
                or key.startswith("GIT_CONFIG_") or key in ("GIT_EXTERNAL_DIFF", "GIT_SSH", "GIT_SSH_COMMAND"):
            raise ValueError(f"safe_git: {key} may not be overridden")
        env[key] = value
    return env


# Subcommands that may show a diff: no external diff or textconv program, whatever config says.
_DIFFING = frozenset({"diff", "log", "show", "whatchanged", "format-patch", "diff-tree", "diff-index", "diff-files"})


_trusted: tuple[str, ...] | None = None


def trusted_directories() -> tuple[str, ...]:
    """The user's `safe.directory` entries (system and global config), read once: the one key of
    that config kept, so a repository the user trusted despite its owner still opens. Reading
    config runs nothing."""
    global _trusted
    if _trusted is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        try:
            p = subprocess.run(["git", "config", "--get-all", "safe.directory"], capture_output=True, text=True,
                               env=env, cwd="/", timeout=10)
            _trusted = tuple(line for line in p.stdout.splitlines() if line and "\0" not in line)
        except (OSError, subprocess.TimeoutExpired):
            _trusted = ()
    return _trusted


def argv(*args: str) -> list[str]:
    """The full command line for `git args...`, hardened."""
    if args and args[0] in _DIFFING:
        args = (args[0], "--no-ext-diff", "--no-textconv", *args[1:])
    trusted = [x for d in trusted_directories() for x in ("-c", f"safe.directory={d}")]
    return ["git", *HARDENED_CONFIG, *trusted, *args]


class Refused(Exception):
    """Git was not run: the repository or its config could make it run an agent's program."""


_agent_roots: set[str] = set()


def guard_root(root: str | Path) -> None:
    """Declare `root` a directory whose trees agents write (task worktrees, scratch checkouts):
    git runs below it only in a linked worktree whose `.git` file checks out, never in a `.git`
    directory an agent put there (its config could name a work tree outside, or any program)."""
    _agent_roots.add(os.path.realpath(root).rstrip("/") or "/")


def _guarding(path: str) -> str | None:
    for root in _agent_roots:
        if path.startswith(root + "/"):
            return root
    return None


@dataclass(frozen=True)
class _Repository:
    env: dict[str, str]  # GIT_DIR / GIT_WORK_TREE for a linked worktree, else empty
    configs: tuple[str, ...] | None  # the config files git reads there (None: not known, read every time)


def _repository(cwd: Path, env: Mapping[str, str] | None) -> _Repository:
    """Where git will look for its repository from `cwd` (the nearest `.git` up, like git), and the config
    files it reads there. A linked worktree gets GIT_DIR and GIT_WORK_TREE, so git never reads its `.git`."""
    if env and "GIT_DIR" in env:
        return _Repository({}, None)
    start = os.path.realpath(cwd)
    guard = _guarding(start)
    d = start
    while not os.path.lexists(os.path.join(d, ".git")):
        if d == os.path.dirname(d) or d == guard:
            if guard:
                raise Refused(f"refusing to run git in {start}: no linked worktree there (its .git is gone)")
            return _Repository({}, None)
        d = os.path.dirname(d)
    dot_git = os.path.join(d, ".git")
    if os.path.isdir(dot_git) and not os.path.islink(dot_git):
        if guard:
            raise Refused(f"refusing to run git in {d}: .git is a directory, not the file a linked worktree has "
                          f"(a repository made inside an agent's tree)")
        return _Repository({}, (os.path.join(dot_git, "config"), os.path.join(dot_git, "config.worktree")))
    try:
        wt = linked_worktree(d)
    except UnsafeGitFile as exc:
        if not guard:  # the user's own checkout (a submodule's `.git` file names `.git/modules/<name>`): theirs
            return _Repository({}, None)
        raise Refused(f"refusing to run git in {d}: {exc}") from exc
    return _Repository({"GIT_DIR": wt.admin, "GIT_WORK_TREE": wt.top},
                       (os.path.join(wt.common, "config"), os.path.join(wt.common, "config.worktree"),
                        os.path.join(wt.admin, "config.worktree")))


def _repository_env(cwd: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    return _repository(cwd, env).env


# config files' identities -> the overrides (or the refusal) read from them: one listing per change, not
# per command (a listing costs a git process, ~2-5 ms; the demo runs ~800 commands)
_overrides_seen: dict[tuple[str, ...], tuple[tuple, list[tuple[str, str]] | Refused]] = {}


def _identity(paths: tuple[str, ...]) -> tuple:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def _remembered(repo: _Repository) -> list[tuple[str, str]] | None:
    if repo.configs is None:
        return None
    seen = _overrides_seen.get(repo.configs)
    if seen is None or seen[0] != _identity(repo.configs):
        return None
    if isinstance(seen[1], Refused):
        raise seen[1]
    return seen[1]


def _remember(repo: _Repository, ident: tuple, listing: bytes) -> list[tuple[str, str]]:
    try:
        overrides = config_overrides(listing)
    except Refused as exc:
        if repo.configs is not None:
            _overrides_seen[repo.configs] = (ident, exc)
        raise
    if repo.configs is not None:
        _overrides_seen[repo.configs] = (ident, overrides)
    return overrides


_LISTING = ("config", "--list", "--show-origin", "-z")
_INCLUDE_KEYS = ("include.path",)
_FILTER_KEYS = ("clean", "smudge", "process")


def config_overrides(listing: bytes) -> list[tuple[str, str]]:
    """From `git config --list --show-origin -z`: the (key, value) pairs that disarm every driver
    the config defines; Refused if it includes another file."""
    fields = listing.split(b"\0")
    overrides: dict[str, str] = {}
    for origin, entry in zip(fields[0::2], fields[1::2], strict=False):
        key, _, value = entry.partition(b"\n")
        name = os.fsdecode(key)
        section, _, rest = name.partition(".")
        sub, _, leaf = rest.rpartition(".")
        if name in _INCLUDE_KEYS or (section == "includeif" and leaf == "path"):
            where = os.fsdecode(origin).removeprefix("file:")
            raise Refused(
                f"{where} includes another config file ({os.fsdecode(value)}): the cockpit's git reads no config "
                f"from a file an agent could write (a tracked file reaches the user's checkout through a merge). "
                f"Copy the settings you need into that config and remove the include: "
                f"git config --file {where} --unset-all {name}")
        if not sub:
            continue
        if section == "filter":
            for k in _FILTER_KEYS:
                overrides[f"filter.{sub}.{k}"] = ""
            overrides[f"filter.{sub}.required"] = "false"
        elif section == "merge" and leaf == "driver":
            overrides[f"merge.{sub}.driver"] = "false"  # a conflict the builder resolves, never a program
        elif section == "diff" and leaf in ("command", "textconv"):
            overrides[f"diff.{sub}.{leaf}"] = "false"
        elif section == "hook" and leaf == "command":  # config-defined hooks (newer git)
            overrides[f"hook.{sub}.command"] = "true"
    return list(overrides.items())


def _with_overrides(env: dict[str, str], overrides: list[tuple[str, str]]) -> dict[str, str]:
    if not overrides:
        return env
    env = dict(env)
    env["GIT_CONFIG_COUNT"] = str(len(overrides))
    for i, (key, value) in enumerate(overrides):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _refusal(exc: Refused) -> tuple[int, bytes, bytes]:
    return 128, b"", f"cockpit: {exc}\n".encode()


async def run(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """Run hardened git on the event loop (asyncio subprocess); returns (exit code, stdout, stderr).
    A refusal (unsafe `.git`, a config include) comes back as git's fatal exit code 128 with the
    reason on stderr, so callers report it like any failed git command."""
    try:
        repo = _repository(cwd, env)
        base = hardened_env({**(env or {}), **repo.env})
        overrides = _remembered(repo)
        if overrides is None:
            ident = _identity(repo.configs) if repo.configs is not None else ()
            rc, listing, err = await _exec(argv(*_LISTING), cwd, base, None)
            if rc != 0:
                return rc, b"", err
            overrides = _remember(repo, ident, listing)
    except Refused as exc:
        return _refusal(exc)
    return await _exec(argv(*args), cwd, _with_overrides(base, overrides), stdin)


async def _exec(command: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=str(cwd),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out, err


def run_sync(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """The blocking twin, for code that runs before the event loop or in a worker thread."""
    command = argv(*args)
    try:
        repo = _repository(cwd, env)
        base = hardened_env({**(env or {}), **repo.env})
        overrides = _remembered(repo)
        if overrides is None:
            ident = _identity(repo.configs) if repo.configs is not None else ()
            listing = subprocess.run(argv(*_LISTING), cwd=str(cwd), capture_output=True, env=base, timeout=timeout)
            if listing.returncode != 0:
                return subprocess.CompletedProcess(command, listing.returncode, b"", listing.stderr)
            overrides = _remember(repo, ident, listing.stdout)
    except Refused as exc:
        rc, out, err = _refusal(exc)
        return subprocess.CompletedProcess(command, rc, out, err)
    return subprocess.run(command, cwd=str(cwd), input=stdin, capture_output=True,
                          env=_with_overrides(base, overrides), timeout=timeout)
