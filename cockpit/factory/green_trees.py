"""Green runs keyed by everything a run depends on: the same inputs are not tested twice, different ones always are.

A passing check belongs to its inputs, not to a commit: the tree tested, the tree of the main it was
judged against (main's test ids may come from its product code), the test command, the protected paths, the runner's
environment and toolchain, and the gate itself (its reporter and defences). `RunKey` hashes them,
each under its own name, so a test can leave one out and watch a stale green land.

`GreenTrees` remembers each green key in memory and, given the store, finds it in the event log
after a restart: the key rides on the verdict event that concluded the green (the check's guard
verdict, or the merge queue's merge verdict). Only the system appends verdicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..host.sandbox import Sandbox
from ..store import reads
from .workspaces import git

KEY_PARTS = ("tree", "main_tests", "command", "protected", "runner", "gate")
GreenKind = Literal["check", "merge"]  # the whole check stage, or the merge queue's run alone


@dataclass(frozen=True)
class Green:
    key: str
    commit: str
    kind: GreenKind
    outcomes: dict[str, str] | None = None  # in memory only: each test's outcome in that run
    # in memory only: what that run collected of the tree itself (cockpit.factory.evidence.Evidence, main's copies
    # of edited test files left out): once the tree is main's, main's baseline without a collect-only run
    collected: Any = None


def _dir_stamp(path: str) -> list[Any]:
    """A directory's identity for the key: installing or removing a package or a tool changes its mtime."""
    try:
        st = os.stat(path)
        return [path, st.st_ino, st.st_mtime_ns]
    except OSError:
        return [path, None]


def runner_fingerprint(sandbox: Sandbox) -> dict[str, Any]:
    """What the run's environment and toolchain are: the sandbox mode, the PATH inside, the interpreter and the
    directories its packages and the PATH's tools come from."""
    path = sandbox.command_path()
    libs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    return {"mode": sandbox.mode, "path": path, "python": os.path.realpath(sys.executable),
            "version": sys.version, "dirs": [_dir_stamp(d) for d in [*path.split(":"), *sorted(libs)]]}


async def tree_of(repo: Path, rev: str) -> str:
    """The tree id of `rev`: what a verdict, a baseline and a key belong to."""
    return await git("rev-parse", "--verify", f"{rev}^{{tree}}", cwd=repo)


async def main_tests(repo: Path, base: str) -> str:
    """Main at `base`, by its whole tree: what the identity check, main's copies of edited test files and main's
    test ids are taken from. Its test files and runner configuration are not enough: the ids main collects and
    what its tests expect may come from product code (a `parametrize` over a product table), so a green judged
    against one main is never reused against another (adversary E-25)."""
    return await tree_of(repo, base)


def run_key(parts: dict[str, Any], used: Iterable[str] = KEY_PARTS) -> str:
    """One hash over the parts named in `used` (all of KEY_PARTS unless a test leaves one out)."""
    chosen = {name: parts[name] for name in sorted(set(used))}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()


class GreenTrees:
    """The green runs of one factory, by key; in memory, and in the store's event log when there is one."""

    def __init__(self, store: Any | None = None) -> None:
        self.store = store
        self._mem: dict[str, Green] = {}

    def remember(self, green: Green) -> None:
        self._mem[green.key] = green

    async def find(self, key: str, kinds: tuple[GreenKind, ...]) -> Green | None:
        hit = self._mem.get(key)
        if hit is not None and hit.kind in kinds:
            return hit
        if self.store is None:
            return None
        gates = tuple({"check": "guard", "merge": "merge"}[k] for k in kinds)
        found = await reads.last_green_verdict(self.store, key, gates)
        if found is None:
            return None
        data = json.loads(found)
        green = Green(key, str(data.get("commit")), "check" if data.get("gate") == "guard" else "merge")
        self._mem[key] = green
        return green
