"""Reproducing a breaker's defect: the cockpit re-runs it, so no hallucinated defect is ever opened.

A reproduction is either a shell command or the body of a pytest test file. It runs in
the sandbox against one exact commit, in a throwaway checkout (never the builder's
tree). It reproduces the defect only if it really fails there:

- a command: a non-zero exit code (or a hang until the timeout); 126/127 (not
  executable, not found) are the reporter's typo, not the product's defect;
- a test file: pytest's exit code 1, a test ran and failed. A file that does not even
  collect (2), a usage error (4) or no test at all (5) proves nothing.

The same run decides closing: a defect whose reproduction passes (exit code 0) on a later
commit is closed by the system when that commit is checked. A test file runs with the tests
gate's outcome stream (cockpit.factory.evidence): it passes only if the stream agrees (the
session ended with status 0, each collected test reported, no report rewritten, the runner
untouched). An adversary session closed a defect with one line in the module under test,
`atexit.register(os._exit, 0)`: pytest failed the reproduction, the process exited 0. A
command gives only its exit code: see docs/gates.md for what that leaves open.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..host import safe_files
from ..host.sandbox import Sandbox
from .evidence import OutcomeStream, contradictions
from .scratch import throwaway_tree
from .workspaces import git

REPRO_TEST_FILE = "test_cockpit_reproduction.py"
PYTEST_REPRO = f"python -m pytest -q -p no:cacheprovider {REPRO_TEST_FILE}"
_TAIL_LINES = 40
# pytest options whose value is the next word
_OPTS_WITH_VALUE = frozenset({"-p", "-k", "-m", "-o", "-c", "-W", "-n", "--rootdir", "--tb", "--import-mode"})


def repro_test_command(test_command: str | None) -> str:
    """How a test-file reproduction runs: the product's own pytest command (its env and options) on
    just that file when it is a plain pytest invocation with options only, else a default pytest run."""
    if not test_command or re.search(r"[;&|<>`$()\n]", test_command):
        return PYTEST_REPRO
    try:
        words = shlex.split(test_command)
    except ValueError:
        return PYTEST_REPRO
    at = [i for i, w in enumerate(words) if w.rsplit("/", 1)[-1] in ("pytest", "py.test")]
    if not at:
        return PYTEST_REPRO
    rest, i = words[at[-1] + 1:], 0
    while i < len(rest):
        if rest[i] in _OPTS_WITH_VALUE:
            i += 2
        elif rest[i].startswith("-"):
            i += 1
        else:
            return PYTEST_REPRO  # it names paths of its own
    return f"{test_command.rstrip()} {REPRO_TEST_FILE}"


def guess_kind(reproduction: str) -> str:
    """'test_file' for Python defining a test function, else 'command'."""
    body = reproduction.lstrip()
    if "def test" in body and ("\n" in body or body.startswith(("import ", "from "))):
        return "test_file"
    return "command"


@dataclass(frozen=True)
class ReproResult:
    commit: str
    kind: str
    exit_code: int | None
    timed_out: bool
    output: str
    contradicts: tuple[str, ...] = ()  # where a test file's run disagrees with itself (its outcome stream)
    outcomes: tuple[str, ...] = ()  # a test file's per-test outcomes as the stream saw them (passed, skipped, ...)

    @property
    def fails(self) -> bool:
        """It reproduces the defect on this commit."""
        if self.timed_out:
            return True
        if self.kind == "test_file":
            return self.exit_code == 1
        return self.exit_code not in (None, 0, 126, 127)

    @property
    def passes(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.contradicts

    @property
    def why(self) -> str:
        if self.contradicts:
            return "the run contradicts itself: " + "; ".join(self.contradicts[:3])
        if self.timed_out:
            return "it hung until the timeout"
        if self.exit_code is None:
            return "it did not run"
        if self.kind == "test_file":
            return {0: "its tests passed", 1: "a test failed", 2: "the file did not collect (an error, not a failing test)",
                    4: "pytest was misused", 5: "it holds no test"}.get(self.exit_code, f"exit code {self.exit_code}")
        if self.exit_code in (126, 127):
            return f"the command could not run (exit code {self.exit_code})"
        return "it exited 0" if self.exit_code == 0 else f"it exited {self.exit_code}"

    def tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(self.output.rstrip("\n").splitlines()[-lines:])

    @property
    def missing(self) -> bool:
        """It stopped because what it exercises is not there: a test file that does not collect, a name,
        module or attribute that does not exist, a command not found."""
        if self.kind == "test_file" and self.exit_code == 2:
            return True
        if self.exit_code in (126, 127):
            return True
        return bool(_MISSING.search(self.tail(40)))


# Python's words for "what you exercise is not in this tree" (the change adds it)
_MISSING = re.compile(r"\b(ModuleNotFoundError|ImportError|NameError)\b|AttributeError: .*has no attribute|"
                      r"cannot import name|command not found|No such file or directory")


async def base_of(repo: Path, commit: str, main_branch: str) -> str | None:
    """The main commit a change started from (its merge base with main), None if it has none or is on main."""
    base = await git("merge-base", commit, f"refs/heads/{main_branch}", cwd=repo, check=False)
    return base if base and base != commit else None


def attributable(on_commit: ReproResult, on_base: ReproResult | None) -> bool:
    """Whether a reproduction that fails on the change's commit shows a defect OF the change.

    It must not fail on the commit the change started from (the merge base with main), or fail there
    only because what it exercises is not there yet while on the commit it gets further. A reproduction
    that fails everywhere (`assert 0`, `sleep 999`, a broken main) proves nothing about this change, and
    no commit of the builder could ever close it (adversary B-08)."""
    if not on_commit.fails:
        return False
    if on_base is None or not on_base.fails:
        return True
    return on_base.missing and not on_commit.missing


def needs_witness(on_base: ReproResult | None) -> bool:
    """A reproduction attributed to the change only because it stops on main where what it exercises is
    missing (new code) must come with a fix that makes it pass: main cannot show the defect closable, and
    `...; assert 0` after a call into the new code fails on main the same way (adversary B-08)."""
    return on_base is not None and not on_base.passes


def witnessed(on_fix: ReproResult) -> bool:
    """The breaker's fix closes the defect: a test file whose every test ran and passed, by the outcome
    stream (a command's exit code is forged by one `os._exit(0)` in the fix; a skip proves nothing)."""
    return (on_fix.kind == "test_file" and on_fix.passes and bool(on_fix.outcomes)
            and all(o == "passed" for o in on_fix.outcomes))


async def fixable_paths(repo: Path, base: str, commit: str) -> set[str]:
    """The files a change added or modified: the only files a breaker's fix may rewrite."""
    out = await git("diff", "--name-only", "--no-renames", "--diff-filter=AM", "-z", base, commit, cwd=repo)
    return {p for p in out.split("\0") if p and p != REPRO_TEST_FILE}


async def reproduce(sandbox: Sandbox, repo: Path, scratch_root: Path, commit: str, kind: str, reproduction: str, *,
                    timeout_s: float, output_cap_bytes: int, test_command: str | None = None,
                    evidence: bool = True, fix: dict[str, str] | None = None) -> ReproResult:
    """Run the reproduction against `commit` in a throwaway checkout; never raises for a failing run.
    `evidence`: a test file's outcomes are read live and cross-checked (off only to show, in a test, the attack
    that lands without it). `fix`: files (path -> content) written over the checkout first (a breaker's witness
    that the defect can be closed)."""
    if kind not in ("command", "test_file"):
        raise ValueError(f"kind must be 'command' or 'test_file', not {kind!r}")
    stream = OutcomeStream(scratch_root) if kind == "test_file" and evidence else None
    try:
        async with throwaway_tree(repo, scratch_root, commit, label="repro") as tree:
            for rel, text in (fix or {}).items():
                safe_files.write_text(tree, rel, text)
            if kind == "test_file":
                # the builder's commit may hold a symlink of that name to a host file: replace the entry, never
                # follow it
                safe_files.write_text(tree, REPRO_TEST_FILE,
                                      reproduction if reproduction.endswith("\n") else reproduction + "\n")
                command = repro_test_command(test_command)
            else:
                command = reproduction
            if stream is not None:
                await stream.open()
            res = await sandbox.run(command, cwd=tree, writable=[tree], timeout_s=timeout_s,
                                    output_cap_bytes=output_cap_bytes,
                                    readable=[stream.dir] if stream is not None else (),
                                    env=stream.env() if stream is not None else None)
            seen = await stream.close(seal=True) if stream is not None else None
    finally:
        if stream is not None:
            stream.remove()
    why: tuple[str, ...] = ()
    if seen is not None and res.exit_code == 0 and not res.timed_out:
        why = tuple(contradictions(seen, res.exit_code, res.output, truncated=res.truncated,
                                   keys_taken=stream.keys_taken if stream is not None else None))
    outcomes = tuple(seen.outcomes().values()) if seen is not None else ()
    return ReproResult(commit, kind, res.exit_code, res.timed_out, res.output, why, outcomes)
