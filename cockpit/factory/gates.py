"""The tests gate: run the product's test command on one exact commit, inside the sandbox.

The command always comes from factory.toml (the caller), never from the worktree, and the
verdict comes from the exit code, never from what the output says. The tests are the
builder's code, so they run sandboxed with only the worktree writable: a test that tries to
edit factory.toml, the store or the repo's hooks fails instead.

A verdict names the commit it judged (invariant 2), so the gate first checks that the
worktree really is at that commit with no local edits: what is tested is what lands.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cockpit.factory.sandbox import Sandbox
from cockpit.factory.workspaces import GitError, check_worktree, git

TAIL_LINES = 60
GATE_TESTS = "tests"


@dataclass(frozen=True)
class GateResult:
    gate: str
    commit: str
    outcome: Literal["pass", "fail"]
    exit_code: int | None
    tail: str
    timed_out: bool
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


async def _worktree_problem(worktree: Path, commit: str) -> str | None:
    """Why the worktree is not exactly `commit`, or None."""
    try:
        check_worktree(worktree)  # before any git runs there, outside the sandbox
        head = await git("rev-parse", "HEAD", cwd=worktree)
        want = await git("rev-parse", "--verify", f"{commit}^{{commit}}", cwd=worktree, check=False)
        if head != (want or commit):
            return f"worktree HEAD is {head}, not the commit under test {commit}"
        dirty = await git("status", "--porcelain", "--untracked-files=no", cwd=worktree)
        if dirty:
            return f"worktree has uncommitted changes to tracked files, so it is not {commit}:\n{dirty}"
    except (GitError, OSError) as exc:
        return f"cannot verify the worktree: {exc}"
    return None


async def run_tests_gate(
    sandbox: Sandbox,
    command: str,
    worktree: Path,
    commit: str,
    *,
    timeout_s: float,
    output_cap_bytes: int,
    env: Mapping[str, str] | None = None,
    also_writable: Iterable[Path] = (),
) -> GateResult:
    """Pass only on exit code 0 within the timeout. Raises SandboxUnavailable rather than run unconfined.

    `env` and `also_writable`: for the guard's test count (cockpit.factory.guards), which rides along."""
    started = time.monotonic()
    problem = await _worktree_problem(worktree, commit)
    if problem is not None:
        return GateResult(GATE_TESTS, commit, "fail", None, problem, False, time.monotonic() - started)

    result = await sandbox.run(
        command,
        cwd=worktree,
        writable=[worktree, *also_writable],
        timeout_s=timeout_s,
        output_cap_bytes=output_cap_bytes,
        env=env,
    )
    tail = _tail(result.output)
    if result.timed_out:
        tail = f"{tail}\n[timed out after {timeout_s:g} s]".lstrip("\n")
    return GateResult(
        gate=GATE_TESTS,
        commit=commit,
        outcome="pass" if result.ok else "fail",
        exit_code=result.exit_code,
        tail=tail,
        timed_out=result.timed_out,
        duration_s=time.monotonic() - started,
    )
