"""Guarding the tests gate itself: a change may not pass by weakening what judges it.

The tests gate trusts the exit code of the product's test command. Code can still pass
by removing the tests that fail, or by rigging the harness (a conftest that skips
everything, a pytest.ini that deselects, a CI file). So, like CODEOWNERS for the
harness, a change blocks for the human, whatever the agents say, when it:

- deletes a test file, or lowers the number of tests collected compared with the main
  commit it was built on (its merge-base: tests that landed on main since do not count
  against it): "tests removed";
- touches a protected file (DEFAULT_PROTECTED, widened per product with
  `protected = [...]` in factory.toml): "protected file changed".

Counting: the configured test command (never one from the worktree) runs in the sandbox
with `PYTEST_ADDOPTS="--collect-only -p cockpit_count_tests"`; that small plugin writes
the collected items per file to a file outside the tree, so nothing the tests print can
fake the count. This works for any command that ends up running pytest (`make test`
included). For a command that does not mention pytest the count is skipped and the
verdict says so: only deleted test files are checked then.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from . import safe_files
from .sandbox import Sandbox
from .scratch import throwaway_tree
from .workspaces import git

DEFAULT_PROTECTED: tuple[str, ...] = (
    "conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", ".github/**", ".ci/**", "Makefile",
)

# Names that are test code in the usual runners; any .py file under a tests/ or test/ directory too.
TEST_FILE_PATTERNS: tuple[str, ...] = (
    "test_*.py", "*_test.py", "tests/**/*.py", "test/**/*.py", "*_test.go", "*.test.js", "*.test.ts",
    "*.test.jsx", "*.test.tsx", "*.spec.js", "*.spec.ts", "*Test.java", "*_spec.rb",
)

TESTS_REMOVED = "tests removed"
PROTECTED_CHANGED = "protected file changed"

_PLUGIN_NAME = "cockpit_count_tests"
_PLUGIN = '''"""Written by the cockpit: counts the collected test items per file (nothing else)."""
import json
import os

_out = None


def pytest_configure(config):
    # read once, then keep it from pytest runs the tests themselves start (they would count twice)
    global _out
    _out = os.environ.pop("COCKPIT_COUNT_FILE", None)
    os.environ.pop("PYTEST_ADDOPTS", None)
    if os.environ.get("PYTHONPATH") == os.path.dirname(os.path.abspath(__file__)):
        del os.environ["PYTHONPATH"]


def pytest_collection_finish(session):
    if _out is None:
        return
    files = {}
    for item in session.items:
        name = item.nodeid.split("::", 1)[0]
        files[name] = files.get(name, 0) + 1
    with open(_out, "a", encoding="utf-8") as out:
        out.write(json.dumps({"total": len(session.items), "files": files}) + "\\n")
'''


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def path_matches(path: str, pattern: str) -> bool:
    """gitignore-like: a pattern without '/' matches a file name at any depth ('conftest.py'), one
    with '/' matches from the repository root ('.github/**', 'tests/**/*.py'); a trailing '/' means
    everything below."""
    pattern = pattern.strip()
    if not pattern:
        return False
    if pattern.endswith("/"):
        pattern += "**"
    pattern = pattern.lstrip("/")
    if "/" not in pattern:
        return fnmatchcase(PurePosixPath(path).name, pattern)
    return bool(_glob_regex(pattern).match(path))


def is_protected(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(path_matches(path, p) for p in patterns)


def is_test_file(path: str) -> bool:
    return any(path_matches(path, p) for p in TEST_FILE_PATTERNS)


@dataclass(frozen=True)
class Change:
    status: str  # git's letter: A, M, D, R, C, T
    path: str
    old_path: str | None = None


async def changes(repo: Path, base: str, commit: str) -> list[Change]:
    """What `commit` changed since `base`, renames detected."""
    out = await git("diff", "--name-status", "-z", "-M", "--no-color", base, commit, cwd=repo)
    parts = out.split("\0")
    found: list[Change] = []
    i = 0
    while i < len(parts):
        status = parts[i].strip()
        if not status:
            i += 1
            continue
        letter = status[0]
        if letter in "RC" and i + 2 < len(parts):
            found.append(Change(letter, parts[i + 2], parts[i + 1]))
            i += 3
        elif i + 1 < len(parts):
            found.append(Change(letter, parts[i + 1]))
            i += 2
        else:
            break
    return found


@dataclass(frozen=True)
class CollectedTests:
    total: int | None  # None: not counted (the note says why)
    files: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class GuardResult:
    reasons: list[str]  # empty: the change keeps the gate intact
    detail: str
    # one stable key per finding, the same on a later re-merge of the same change: what a human override
    # accepts (cockpit.domain.tasks.carry_override)
    findings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.reasons)


def counts_pytest(command: str) -> bool:
    return bool(re.search(r"py\.?test", command))


class CountProbe:
    """A scratch dir (outside the tree) holding the counting plugin and the file it writes."""

    def __init__(self, scratch_root: Path):
        self.dir = Path(scratch_root) / f"count-{uuid.uuid4().hex[:12]}"
        self.dir.mkdir(parents=True)
        safe_files.write_text(self.dir, f"{_PLUGIN_NAME}.py", _PLUGIN)
        self.out = self.dir / "count.jsonl"

    def env(self, *, collect_only: bool) -> dict[str, str]:
        opts = f"{'--collect-only ' if collect_only else ''}-p {_PLUGIN_NAME}"
        return {"PYTEST_ADDOPTS": opts, "PYTHONPATH": str(self.dir), "COCKPIT_COUNT_FILE": str(self.out)}

    def read(self) -> CollectedTests:
        total, files = 0, {}
        try:
            # the sandboxed command could write this dir: a symlink in place of the file is not followed
            lines = (safe_files.read_text(self.dir, self.out.name, cap=5_000_000).splitlines()
                     if os.path.lexists(self.out) else [])
            for line in lines:
                rec = json.loads(line)
                total += int(rec["total"])
                for name, n in rec["files"].items():
                    files[name] = files.get(name, 0) + int(n)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            return CollectedTests(None, note=f"the test count could not be read: {exc}")
        if not lines:
            return CollectedTests(None, note="the test command ran no pytest collection, so its tests were not counted")
        return CollectedTests(total, files)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


NOT_PYTEST = CollectedTests(None, note="the test command does not run pytest, so its tests are not counted; only "
                                       "deleted test files are checked")


async def count_tests(sandbox: Sandbox, command: str, tree: Path, scratch_root: Path, *,
                      timeout_s: float, output_cap_bytes: int) -> CollectedTests:
    """Collect (never run) the tests of `tree` with the configured command; `tree` stays read-only."""
    if not counts_pytest(command):
        return NOT_PYTEST
    probe = CountProbe(scratch_root)
    try:
        res = await sandbox.run(command, cwd=tree, writable=[probe.dir], readable=[tree], timeout_s=timeout_s,
                                output_cap_bytes=output_cap_bytes, env=probe.env(collect_only=True))
        if res.timed_out:
            return CollectedTests(None, note=f"collecting the tests timed out after {timeout_s:g} s")
        if res.exit_code not in (0, 5):  # 5: pytest collected nothing
            tail = "\n".join(res.output.strip().splitlines()[-15:])
            return CollectedTests(None, note=f"collecting the tests failed (exit code {res.exit_code}):\n{tail}")
        return probe.read()
    finally:
        probe.close()


def compare_counts(base: CollectedTests, head: CollectedTests, base_sha: str) -> GuardResult | None:
    """'tests removed' when head collects fewer tests than base; None when they cannot be compared."""
    if base.total is None and head.total is None:
        return None
    if head.total is None:
        return GuardResult([TESTS_REMOVED], f"the tests could not be counted on this commit, but {base.total} were "
                                            f"collected on main ({base_sha[:12]}): {head.note}", ["uncounted"])
    if base.total is None:
        return None
    if head.total >= base.total:
        return GuardResult([], f"{head.total} tests collected (main {base_sha[:12]}: {base.total})")
    fewer = [(name, n, head.files.get(name, 0)) for name, n in sorted(base.files.items())
             if head.files.get(name, 0) < n]
    lost = [f"  {name}: {n} -> {now}" for name, n, now in fewer]
    findings = [f"fewer:{name}:{n - now}" for name, n, now in fewer] or [f"fewer:total:{base.total - head.total}"]
    return GuardResult([TESTS_REMOVED], f"{head.total} tests collected on this commit, {base.total} on main "
                                        f"({base_sha[:12]}) where it was built from:\n" + "\n".join(lost), findings)


class GateGuard:
    """The guard of one factory's tests gate; caches the test count of main commits."""

    def __init__(self, sandbox: Sandbox, scratch_root: Path, *, timeout_s: float, output_cap_bytes: int):
        self.sandbox = sandbox
        self.scratch_root = Path(scratch_root)
        self.timeout_s = timeout_s
        self.output_cap_bytes = output_cap_bytes
        self._main_counts: dict[tuple[str, str, str], CollectedTests] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def base_of(self, repo: Path, main_branch: str, commit: str) -> str:
        return await git("merge-base", f"refs/heads/{main_branch}", commit, cwd=repo)

    async def static(self, repo: Path, base: str, commit: str, protected: list[str] | tuple[str, ...]) -> GuardResult:
        """Deleted test files and protected files, from git alone (nothing of the change runs)."""
        reasons: list[str] = []
        lines: list[str] = []
        changed = await changes(repo, base, commit)
        removed = [c.old_path or c.path for c in changed
                   if (c.status == "D" and is_test_file(c.path))
                   or (c.status == "R" and c.old_path and is_test_file(c.old_path) and not is_test_file(c.path))]
        findings: list[str] = []
        if removed:
            reasons.append(TESTS_REMOVED)
            lines.append("test files deleted: " + ", ".join(sorted(removed)))
            findings += [f"deleted:{p}" for p in sorted(removed)]
        touched = sorted({p for c in changed for p in (c.path, c.old_path)
                          if p and is_protected(p, protected)})
        if touched:
            reasons.append(PROTECTED_CHANGED)
            lines.append("protected files changed: " + ", ".join(touched))
            findings += [f"protected:{p}" for p in touched]
        return GuardResult(reasons, "\n".join(lines), findings)

    async def count(self, command: str, tree: Path) -> CollectedTests:
        return await count_tests(self.sandbox, command, tree, self.scratch_root, timeout_s=self.timeout_s,
                                 output_cap_bytes=self.output_cap_bytes)

    async def main_count(self, repo: Path, command: str, sha: str) -> CollectedTests:
        key = (str(repo), command, sha)
        async with self._locks[key]:  # tasks built on the same main share one count
            if key not in self._main_counts:
                async with throwaway_tree(repo, self.scratch_root, sha, label="main") as tree:
                    self._main_counts[key] = await self.count(command, tree)
        return self._main_counts[key]

    async def check_static(self, repo: Path, main_branch: str, commit: str,
                           protected: list[str] | tuple[str, ...]) -> tuple[str, GuardResult]:
        """(the main commit `commit` was built from, the git-only verdict): run before any of its code."""
        base = await self.base_of(repo, main_branch, commit)
        return base, await self.static(repo, base, commit, protected)

    def probe(self, command: str) -> CountProbe | None:
        """A probe to count the tests during the tests gate's own run (no extra run); None if not pytest."""
        return CountProbe(self.scratch_root) if counts_pytest(command) else None

    async def check_count(self, repo: Path, base: str, tree: Path, command: str,
                          counted: CollectedTests | None = None) -> GuardResult:
        """Collected tests of the change (checked out, read-only, at `tree`; or `counted` during its gate run)
        against main at `base`."""
        head = counted if counted is not None and counted.total is not None else await self.count(command, tree)
        main = await self.main_count(repo, command, base)
        compared = compare_counts(main, head, base)
        if compared is None:
            return GuardResult([], head.note or main.note)
        return compared


def combine(first: GuardResult, second: GuardResult) -> GuardResult:
    """Both checks' reasons, details and findings as one verdict."""
    reasons = [*first.reasons, *[r for r in second.reasons if r not in first.reasons]]
    detail = "\n".join(d for d in (first.detail, second.detail) if d)
    findings = [*first.findings, *second.findings]
    # a deleted test file also collects fewer tests: the deletion says it (the same finding with or without a count)
    deleted = {f.removeprefix("deleted:") for f in findings if f.startswith("deleted:")}
    findings = [f for f in findings if not (f.startswith("fewer:") and f.split(":")[1] in deleted)]
    return GuardResult(reasons, detail, findings)
