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
  GIT_CONFIG_PARAMETERS would point git elsewhere or add config).

Callers prefer commit objects (rev-parse, cat-file, diff-tree, ls-tree) over an agent's
worktree; diffs pass --no-ext-diff --no-textconv. docs/security.md states the rule.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

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


async def run(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """Run hardened git on the event loop (asyncio subprocess); returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv(*args),
        cwd=str(cwd),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hardened_env(env),
    )  # fmt: skip
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out, err


def run_sync(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """The blocking twin, for code that runs before the event loop or in a worker thread."""
    return subprocess.run(argv(*args), cwd=str(cwd), input=stdin, capture_output=True,
                          env=hardened_env(env), timeout=timeout)
