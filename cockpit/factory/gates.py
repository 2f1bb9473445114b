"""The tests gate: one object that owns the stage from commit to verdicts, and trusts nothing the tests say.

How it decides (docs/gates.md has the whole story):

1. A clean tree: the commit is checked out by the cockpit into a fresh directory of its own
   (`git worktree add --detach`), never the builder's worktree: nothing uncommitted,
   ignored or generated there takes part.
2. Before anything runs, from git alone: no test file deleted, no runner configuration or
   factory file (`.cockpit/`) touched (cockpit.factory.guards).
3. The product's configured command (factory.toml, never the tree) runs in the sandbox.
   For pytest, each test's outcome leaves the process live through a FIFO
   (cockpit.factory.evidence) and is cross-checked with the exit code and the runner's own
   summary: any disagreement fails with "the test run contradicts itself".
4. Main's tests by identity (cockpit.factory.suite_identity): each test main collects must
   still be collected, unchanged, and not skipped; main's version of each test file the
   change edited runs against the candidate too.
5. Code that reaches into the runner (cockpit.factory.runner_reach) is named, file:line.

A passing verdict belongs to everything the run depended on (cockpit.factory.green_trees: the
tree, main's tests, the command, the protected paths, the runner, the gate): the check stage and
the merge queue reuse it for the very same inputs, also after a restart, and run otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ..domain.tasks import REACH_FINDING
from .evidence import _PLUGIN, CONTRADICTS, Evidence, OutcomeStream, contradictions
from .main_apart import TestLayout, main_tests_apart
from .green_trees import KEY_PARTS, Green, GreenTrees, main_tests, run_key, runner_fingerprint, tree_of
from .guards import (
    DEFAULT_PROTECTED, PROTECTED_CHANGED, TESTS_REMOVED, GateGuard, changes, counts_pytest, is_test_file,
)
from ..host import safe_files
from .remerge import merge_commit
from .runner_reach import Reach, added_reach, reaches_reporter
from ..host.sandbox import Sandbox
from .scratch import throwaway_tree
from .suite_identity import StaticChanges, changed_tests, parsed_tests, renamed_source, split_id, static_changes
from . import off_loop, product_names
from .workspaces import git

TAIL_LINES = 60
GATE_TESTS = "tests"
GUARD = "guard"
# a check made on top of the tasks ahead that did not pass there: the commit is then checked on main alone
TRAIN = "train"
DEFENCES = ("evidence", "seal", "raw_outcomes", "runner_intact", "reporter_reach", "identity", "runner_config",
            "protected", "shadows", "main_copies", "product_patch", "per_session", "written_in", "support",
            "collect_plugins", "product_replaced", "main_apart", "merge_check", "python_files",
            "product_values", "each_alone")
TESTS_CHANGED = "tests changed"
LEANS = "fails alone on main too"
RUNNER_CHANGED = "runner configuration changed"
REPORTER_REACHED = "reaches into the test reporter"
PRODUCT_PATCHED = "test code replaces product code"
MAIN_APART_FAILED = "main's tests fail without this change's test files"


@dataclass(frozen=True)
class GateResult:
    gate: str
    commit: str
    outcome: Literal["pass", "fail"]
    exit_code: int | None
    tail: str
    timed_out: bool
    duration_s: float
    tree: str = ""
    contradictions: tuple[str, ...] = ()
    evidence: Evidence | None = None
    reused_from: str | None = None  # the commit whose green run on the same tree this verdict reuses
    run_key: str = ""  # what the run depended on, hashed (green_trees.run_key): set on a green merge run
    blocks: tuple[str, ...] = ()  # a merge checked like a commit that waits for the human: the stage's reasons

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def detail(self) -> str:
        if self.reused_from:
            return self.tail
        head = f"exit code {self.exit_code}{' (timed out)' if self.timed_out else ''}"
        if self.contradictions:
            head += f"\n{CONTRADICTS}:\n" + "\n".join(f"  - {c}" for c in self.contradictions)
        return f"{head}\n{self.tail}"


def _of_the_tree(evidence: Evidence | None, copies: set[str]) -> Evidence | None:
    """A run's evidence as the tree alone would give it: the tests of main's copies that ran beside it (exactly
    the files the gate wrote, never a name the tree chose) left out."""
    if evidence is None or not copies:
        return evidence
    return dataclasses.replace(evidence, collected=[i for i in evidence.collected if split_id(i)[0] not in copies])


def _counted(res: GateResult) -> str:
    ev = res.evidence
    return f"{len(ev.collected)} tests" if ev is not None and ev.reported else f"exit code {res.exit_code}"


async def _stopped(task: asyncio.Task[Any]) -> None:
    """Stop a run that is no longer needed (its sandbox is killed) and wait for it to be gone."""
    if not task.done():
        task.cancel()
        await asyncio.wait([task])  # the caller's own cancellation still comes through
    if not task.cancelled():
        task.exception()  # retrieved: nothing of it is used


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def main_copy_name(path: str) -> str:
    """Where main's version of a changed test file runs beside the candidate's: a name pytest still collects."""
    p = PurePosixPath(path)
    if p.name.endswith("_test.py"):
        name = p.name[: -len("_test.py")] + "__cockpit_main_test.py"
    else:
        name = p.stem + "__cockpit_main" + p.suffix
    return str(p.with_name(name))


def _per_file(main_ids: list[str], ids: list[str], renamed: dict[str, str]) -> list[str]:
    """'  tests/test_units.py: 2 -> 1' for each file of main that collects fewer tests now."""
    def per_file(xs: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in xs:
            out[split_id(i)[0]] = out.get(split_id(i)[0], 0) + 1
        return out

    was, now = per_file(main_ids), per_file(ids)
    return [f"  {f}: {n} -> {now.get(renamed.get(f, f), 0)}" for f, n in sorted(was.items())
            if now.get(renamed.get(f, f), 0) < n]


@dataclass
class TestsStage:
    """What the check stage decided: verdicts to record in order, then one action."""

    verdicts: list[dict[str, Any]] = field(default_factory=list)
    action: Literal["pass", "back", "block"] = "pass"
    reasons: list[str] = field(default_factory=list)
    text: str = ""
    reach: list[Reach] = field(default_factory=list)
    # one stable key per guard finding (cockpit.domain.tasks.carry_override compares them across commits)
    findings: list[str] = field(default_factory=list)
    # blocked by the guard alone: the tests ran from a clean checkout, passed and contradicted nothing
    guard_only: bool = False
    # the tasks ahead it was tested on top of (a merge train), in their order
    stack: tuple[tuple[str, str], ...] = ()


class TestsGate:
    """The tests gate of one factory: its runs, its baselines of main, its green trees."""

    __test__ = False  # not a pytest test class

    def __init__(self, sandbox: Sandbox, scratch_root: Path, *, timeout_s: float, output_cap_bytes: int,
                 store: Any | None = None) -> None:
        self.sandbox = sandbox
        self.scratch_root = Path(scratch_root)
        self.timeout_s = timeout_s
        self.output_cap_bytes = output_cap_bytes
        self.guard = GateGuard()
        # green runs by what they depended on; with the store, found again after a restart
        self.greens = GreenTrees(store)
        self.key_parts: set[str] = set(KEY_PARTS)  # a test leaves one out to show a stale green then lands
        self._baselines: dict[tuple[str, str, str], Evidence] = {}
        self._baseline_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        # by (repo, command, tree): what a tree collects and each test's outcome on it, from a run of that tree
        self._main_outcomes: dict[tuple[str, str, str], dict[str, str]] = {}
        self.runs = 0  # suite runs made (collect-only baselines excluded): the bench counts them
        self.collections = 0  # collect-only runs of main made for a baseline
        self.apart_runs = 0  # runs of main's tests apart from a change's test files (main_apart), each file alone
        # (repo, command, main's tree, file) -> whether the file fails when it runs alone on main
        self._alone_on_main: dict[tuple[str, str, str, str], bool] = {}
        self.reused = 0
        # failed runs on a merge train by what they depended on (their key), this session only: a flaky red costs
        # the builder a new commit, never a landing; a timed-out or self-contradicting run is not kept
        self.reds: dict[str, GateResult] = {}
        self.reuse_reds = True  # a test switches it off: the queue then runs a known red tree again
        # each defence by name; the attack tests switch one off to show their attack then lands
        self.defences: set[str] = set(DEFENCES)

    # --- one run ------------------------------------------------------------------

    async def run(self, repo: Path, commit: str, command: str, *, main_copies: Mapping[str, str] | None = None,
                  collect_only: bool = False, env: Mapping[str, str] | None = None,
                  expect_pytest: bool = False, apart: bool = False, only: str | None = None) -> GateResult:
        """Run `command` on a fresh checkout of `commit`; pytest's outcomes are read live and cross-checked."""
        started = time.monotonic()
        tree_id = await tree_of(repo, commit)
        # always listening: a command that does not name pytest (make test, tox) may still run it
        stream = OutcomeStream(self.scratch_root)
        try:
            async with throwaway_tree(repo, self.scratch_root, commit, label="gate") as tree:
                for rel, text in (main_copies or {}).items():  # never through a link the commit holds
                    safe_files.write_text(tree, rel, text)
                await stream.open()
                if apart:
                    self.apart_runs += 1
                elif not collect_only:
                    self.runs += 1
                res = await self.sandbox.run(command, cwd=tree, writable=[tree], readable=[stream.dir],
                                             timeout_s=self.timeout_s, output_cap_bytes=self.output_cap_bytes,
                                             env={**(env or {}), **stream.env(collect_only=collect_only, only=only)})
                evidence: Evidence | None = await stream.close(seal="seal" in self.defences)
        finally:
            stream.remove()
        tail = _tail(res.output)
        if res.timed_out:
            tail = f"{tail}\n[timed out after {self.timeout_s:g} s]".lstrip("\n")
        why: list[str] = []
        expected = counts_pytest(command) or expect_pytest
        if evidence is not None and not evidence.reported and not expected:
            tail += "\n[no pytest ran: outcomes not observed, the verdict is the exit code]"
            evidence = None
        elif evidence is not None and res.ok and not collect_only and "evidence" in self.defences:
            why = contradictions(evidence, res.exit_code, res.output, truncated=res.truncated,
                                 raw_outcomes="raw_outcomes" in self.defences,
                                 runner_intact="runner_intact" in self.defences,
                                 per_session="per_session" in self.defences,
                                 keys_taken=stream.keys_taken if "seal" in self.defences else None)
        return GateResult(GATE_TESTS, commit, "pass" if res.ok and not why else "fail", res.exit_code, tail,
                          res.timed_out, time.monotonic() - started, tree_id, tuple(why), evidence)

    # --- what a run depends on ------------------------------------------------------

    async def run_key(self, repo: Path, commit: str, base: str, command: str, patterns: list[str] | tuple[str, ...],
                      ) -> str:
        """The hash of every input a green verdict on `commit` judged against main at `base` depends on."""
        tree = await tree_of(repo, commit)
        parts = {"tree": [str(repo), tree], "command": command, "protected": sorted(patterns),
                 "main_tests": await main_tests(repo, base) if "main_tests" in self.key_parts else "",
                 "runner": runner_fingerprint(self.sandbox),
                 "gate": [hashlib.sha256(_PLUGIN.encode()).hexdigest(), sorted(self.defences)]}
        return run_key(parts, self.key_parts)

    # --- main's baseline ------------------------------------------------------------

    async def baseline(self, repo: Path, command: str, sha: str, *, known_pytest: bool = False) -> Evidence | None:
        """What main at `sha` collects (ids, plugins, ini file): one collect-only run per main tree (a merge
        commit whose tree was already run green, or collected, costs no other run).

        Only for a command that runs pytest (named in it, or seen in a run: `known_pytest`): collect-only
        means nothing to another runner, which would run its whole suite."""
        if not (counts_pytest(command) or known_pytest):
            return None
        key = (str(repo), command, await tree_of(repo, sha))
        async with self._baseline_locks.setdefault(key, asyncio.Lock()):  # tasks on one main share one collection
            if key not in self._baselines:
                self.collections += 1
                res = await self.run(repo, sha, command, collect_only=True)
                self._baselines[key] = res.evidence or Evidence()
        return self._baselines[key]

    def _seed_baseline(self, repo: Path, command: str, tree: str, evidence: Evidence | None) -> None:
        """Main's baseline for `tree` from a green run of that very tree (the merge that becomes main): what the
        collect-only run would find, one pytest process fewer per landing. Only a run whose every session
        ended and announced its count; a command that never ran pytest gives none."""
        if evidence is None or not evidence.reported or evidence.collected_n is None \
                or evidence.ended < evidence.sessions or evidence.collect_errors:
            return
        self._baselines.setdefault((str(repo), command, tree), evidence)

    async def main_outcomes(self, repo: Path, command: str, sha: str) -> dict[str, str]:
        """Each main test's outcome on main: from a green run of its tree the cockpit made, or one full run now."""
        key = (str(repo), command, await tree_of(repo, sha))
        if key not in self._main_outcomes:
            res = await self.run(repo, sha, command)
            self._main_outcomes[key] = res.evidence.outcomes() if res.evidence else {}
        return self._main_outcomes[key]

    # --- the check stage ------------------------------------------------------------

    @staticmethod
    async def _left_replaced(repo: Path, base: str, tested: str, ev: Evidence,
                             mine: set[str]) -> list[tuple[str, str, str]]:
        """A product function or class a test left replaced after it ran, where that hides the change: the test
        is the change's own, or the change rebinds that very name in the module's file (a test of main that
        leaves `calc._op` as main's calc.py binds it anyway then hides a change of `_op`: adversary F-30's patch
        moved into a test's body). As (what, the test, the line that says so)."""
        out = []
        rebinds: dict[str, set[str] | None] = {}
        for what, after, path, attr in ev.changed:
            if after == "import":
                continue
            if after.split("::", 1)[0] in mine:
                out.append((what, after, f"  {what}: left replaced by {after}, a test of this change"))
                continue
            if path not in mine:
                continue
            if path not in rebinds:
                old = await git("cat-file", "-p", f"{base}:{path}", cwd=repo, check=False)
                new = await git("cat-file", "-p", f"{tested}:{path}", cwd=repo, check=False)
                try:
                    rebinds[path] = await off_loop.call(product_names.rebound, old, new)
                except off_loop.TooLong:
                    rebinds[path] = None
            names = rebinds[path]
            if names is None or attr in names:
                out.append((what, after, f"  {what}: left replaced by {after}, while this change rebinds "
                                         f"{attr} in {path}: the tests after it test the test's value, not the change's"))
        return out

    async def reach(self, repo: Path, base: str, commit: str) -> list[Reach]:
        changed = await changes(repo, base, commit)
        return await added_reach(repo, base, commit, [(c.path, c.old_path) for c in changed if c.status != "D"])

    as_it_lands = True  # a test switches it off to count the queue's extra run when main moved

    train = True  # a test switches it off: a task checked beside another then runs again in the queue

    async def as_it_would_land(self, repo: Path, main_branch: str, commit: str, ahead: Sequence[tuple[str, str]] = (),
                               ) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
        """(what to test, what it was merged onto or None, the tasks ahead it was stacked on).

        `commit` itself when it contains main's head, else git's own merge of it onto that head (a commit object
        only, nothing checked out). `ahead`: (task, commit) of the product's tasks checked green and not landed
        yet, in the order they were checked: the commit is tested on top of main with them merged in (a merge
        train), the tree main will hold once they have landed; the merge queue then lands it after them and
        reuses this run. Any of them that does not merge cleanly drops the whole train: main's head alone.
        A conflict with main, or unrelated histories, test the commit alone: the queue says what is in the way."""
        if not self.as_it_lands:
            return commit, None, ()
        head = await git("rev-parse", "--verify", f"refs/heads/{main_branch}^{{commit}}", cwd=repo)
        for train in ((tuple(ahead), head), ((), head)) if ahead and self.train else (((), head),):
            stack, onto = train
            for task_id, c in stack:  # main with the tasks ahead landed, in their order
                onto = await self._onto(repo, onto, c, f"cockpit: {task_id} {c[:12]} ahead in the merge train")
                if onto is None:
                    break
            if onto is None:
                continue
            base = await git("merge-base", onto, commit, cwd=repo, check=False)
            if base == onto:
                return commit, (onto if stack else None), stack
            merged = await merge_commit(repo, onto, commit, f"cockpit: {commit[:12]} merged onto {onto[:12]} for "
                                                            "the tests gate")
            if merged:
                return merged, onto, stack
        return commit, None, ()

    @staticmethod
    async def _onto(repo: Path, onto: str, commit: str, message: str) -> str | None:
        """`onto` with `commit` merged in (`commit` itself when it contains `onto`), or None on a conflict."""
        if await git("merge-base", onto, commit, cwd=repo, check=False) == onto:
            return commit
        return await merge_commit(repo, onto, commit, message)

    async def check(self, repo: Path, main_branch: str, commit: str, command: str, *,
                    protected: list[str] | tuple[str, ...] = (),
                    started: Callable[[dict[str, Any]], Awaitable[Any]] | None = None,
                    run_anyway: bool = False, ahead: Sequence[tuple[str, str]] = ()) -> TestsStage:
        """The whole tests stage of one commit: guard, clean run, evidence, main's tests, runner reach.

        `run_anyway`: a human override may carry to this commit, so the tests run even when the git-only
        guard fails; the stage still blocks, `guard_only` saying that the guard alone stopped it.
        `ahead`: the product's tasks checked green and not landed yet (see `as_it_would_land`). A commit that
        does not pass on top of them is checked again on main alone, and judged there: the tasks ahead have not
        landed and may never land; if they do first, the merge queue tests it on that main, as before."""
        stage = await self._check_on(repo, main_branch, commit, command, protected=protected, started=started,
                                     run_anyway=run_anyway, ahead=ahead)
        if not stage.stack or stage.action == "pass":
            return stage
        alone = await self._check_on(repo, main_branch, commit, command, protected=protected, started=started,
                                     run_anyway=run_anyway, ahead=())
        train = " and ".join(t for t, _ in stage.stack)
        first = stage.verdicts[0] if stage.verdicts else {}
        alone.verdicts.insert(0, {
            "gate": TRAIN, "commit": commit, "outcome": "fail", "tested": first.get("tested"),
            "onto": first.get("onto"), "ahead": [list(a) for a in stage.stack],
            "detail": (f"on top of {train} (checked green, not landed yet) this commit does not pass; it was checked "
                       f"on main alone instead (the verdicts after this one). If {train} lands first, the merge "
                       f"queue tests it on that main.\n{stage.text[:3000]}")})
        return alone

    async def _check_on(self, repo: Path, main_branch: str, commit: str, command: str, *,
                        protected: list[str] | tuple[str, ...], started: Callable[[dict[str, Any]], Awaitable[Any]] | None,
                        run_anyway: bool, ahead: Sequence[tuple[str, str]]) -> TestsStage:
        stage = TestsStage()
        defaults = DEFAULT_PROTECTED if "protected" in self.defences else ()
        # the tree that would land: when main moved since the commit branched, the commit merged onto main's
        # head is what is judged and run, against main's head (the queue then finds that tree green)
        tested, onto, stack = (commit, None, ()) if run_anyway else await self.as_it_would_land(
            repo, main_branch, commit, ahead)
        stage.stack = stack
        train = " and ".join(t for t, _ in stack)
        on = f"{commit[:12]}" + (f" merged onto main with {train} landed ({onto[:12]})" if stack
                                 else f" merged onto main {onto[:12]}" if onto else "")
        label: dict[str, Any] = {"commit": commit, **({"tested": tested, "onto": onto} if onto else {}),
                                 **({"ahead": [list(a) for a in stack]} if stack else {})}
        # on a train, what this change is judged against is main with the tasks ahead landed: their tests are
        # main's tests for it (a test of theirs this change rewrites waits for the human like one of main's)
        base, static = await self.guard.check_static(repo, main_branch, tested, [*defaults, *protected],
                                                     shadows="shadows" in self.defences,
                                                     support="support" in self.defences,
                                                     base=onto if stack else None)
        changed = await changes(repo, base, tested)
        stage.reach = await added_reach(repo, base, tested, [(c.path, c.old_path) for c in changed if c.status != "D"])
        reach_text = ("\nReaching into the test runner (added by this change):\n" +
                      "\n".join(f"  {r}" for r in stage.reach)) if stage.reach else ""
        hostile = [r for r in stage.reach if reaches_reporter(r)] if "reporter_reach" in self.defences else []
        if hostile:
            # no product test needs the reporter's fds, closure or plugin slot: only a human lands this (an
            # override of an earlier commit does not carry to it: the human never saw this code)
            text = (f"{REPORTER_REACHED}: code added by this change can read or replace the cockpit's reporter "
                    "from inside the test process\n" + "\n".join(f"  {r}" for r in hostile) + reach_text)
            stage.findings = sorted({f"{REACH_FINDING}{r.path}: {r.what}" for r in hostile})
            stage.verdicts.append({"gate": GUARD, **label, "outcome": "fail", "detail": text,
                                   "findings": stage.findings})
            return self._block(stage, [REPORTER_REACHED], text, commit)
        if static.failed and not run_anyway:
            stage.findings = list(static.findings)
            stage.verdicts.append({"gate": GUARD, **label, "outcome": "fail",
                                   "detail": static.detail + reach_text, "findings": stage.findings})
            return self._block(stage, static.reasons, static.detail + reach_text, commit)
        if started is not None:
            await started({"gate": GATE_TESTS, **label, "command": command})
        key = await self.run_key(repo, tested, base, command, [*defaults, *protected])
        hit = None if static.failed else await self.greens.find(key, ("check",))
        if hit is not None:  # the very same inputs were checked green (another task, or before a restart)
            self.reused += 1
            tree = await tree_of(repo, tested)
            note = (f"not run again: tree {tree[:12]} was checked green as {hit.commit[:12]} with the same inputs "
                    "(main's tests and runner configuration, the command, the protected paths, the runner, the gate)")
            stage.verdicts.append({"gate": GATE_TESTS, **label, "outcome": "pass", "detail": note + reach_text,
                                   "tree": tree})
            stage.verdicts.append({"gate": GUARD, **label, "outcome": "pass", "run_key": key,
                                   "detail": f"each of main's tests unchanged: {note}{reach_text}"})
            return stage
        renamed = {c.old_path: c.path for c in changed if c.status == "R" and c.old_path}
        edited = {c.old_path or c.path: c for c in changed if c.status in "MRD"}  # main's files this change touches
        # main's version of each edited test file whose tests of main are all intact runs beside the
        # candidate's: a rewritten fixture or helper in that file cannot hide a broken change
        copies: dict[str, str] = {}
        copy_renames: dict[str, dict[str, str]] = {}
        apart_renamed: dict[str, str] = {}  # main's path -> main's text under the names this change renamed
        for src, c in edited.items() if "main_copies" in self.defences else []:
            if c.status == "D" or not (src.endswith(".py") and is_test_file(src)):
                continue
            text = await git("cat-file", "-p", f"{base}:{src}", cwd=repo)
            parsed = await parsed_tests(text)  # never on the event loop: a file may be huge
            names = [n for n in parsed.tests  # pytest's default names: fixtures and helpers are not tests
                     if n.rsplit("::", 1)[-1].startswith("test") and all(k.startswith("Test") for k in n.split("::")[:-1])]
            intact = await static_changes(repo, base, tested, [f"{src}::{n}" for n in names], renamed)
            if names and not intact.why:
                # a test that follows a rename still runs as main wrote it, under the new names: its import
                # line is not part of its identity, and could point it at another function of that name
                mapping = intact.renames.get(src) if intact.renamed else None
                copies[main_copy_name(c.path)] = (renamed_source(text, mapping) if mapping else text) + "\n"
                if mapping:
                    copy_renames[main_copy_name(c.path)] = mapping
                    apart_renamed[src] = renamed_source(text, mapping) + "\n"
        # main's baseline (one collect-only run per main commit) beside the candidate's run, and main's tests
        # apart from the change's test files (when it has any): on a busy machine the stage's processes share
        # the CPU with the agents' between them. Main's tests apart only matter to a run that passed and a
        # change that stands so far: otherwise they are stopped where they are (a failed round costs no more)
        baseline = asyncio.create_task(self.baseline(repo, command, base), name="main-baseline")
        own_run = asyncio.create_task(self.run(repo, tested, command, main_copies=copies,
                                               expect_pytest=counts_pytest(command)), name="change-run")
        apart_task = asyncio.create_task(self._apart(repo, base, tested, apart_renamed, command, baseline, own_run),
                                         name="main-tests-apart")
        try:
            main, res = await asyncio.gather(baseline, own_run)
        except BaseException:
            for task in (apart_task, baseline, own_run):
                await _stopped(task)
            raise
        try:
            if main is None and res.evidence is not None and res.evidence.reported:
                # the command ran pytest without naming it (make test): main's baseline now
                main = await self.baseline(repo, command, base, known_pytest=True)
            main_ids = main.collected if main is not None and main.reported else []
            # only files the change touched can differ from main's
            static_ids = await static_changes(repo, base, tested, [i for i in main_ids if split_id(i)[0] in edited],
                                              renamed)
            detail = res.detail()
            if copies:
                detail += "\nmain's versions of the edited test files ran too: " + ", ".join(
                    f"{p} (renamed: {', '.join(f'{a} -> {b}' for a, b in sorted(copy_renames[p].items()))})"
                    if p in copy_renames else p for p in sorted(copies))
            tests_verdict: dict[str, Any] = {"gate": GATE_TESTS, **label, "outcome": res.outcome,
                                             "detail": detail + reach_text, "exit_code": res.exit_code,
                                             "seconds": round(res.duration_s, 3), "tree": res.tree}
            stage.verdicts.append(tests_verdict)
            if res.contradictions:
                return self._block(stage, ["tests", CONTRADICTS], f"{CONTRADICTS} on {on}:\n{detail}{reach_text}",
                                   commit, weakened=False)
            # a test file this change added or edited put its own function or class in place of the product's for the
            # whole session: main's unchanged tests then test the replacement (adversary C-01)
            mine = {c.path for c in changed if c.status != "D"}
            patched = [(what, by) for what, by in (res.evidence.patched if res.evidence else []) if by in mine] \
                if "product_patch" in self.defences else []
            # a plain `def` of the product that is something else at run time (a builtin put in its place, adversary
            # D-02): at import when main's own collection does not show it, or after a test of this change
            was = {what for what, _, _ in main.replaced} if main is not None else set()
            replaced = [(what, now, after) for what, now, after in (res.evidence.replaced if res.evidence else [])
                        if (after == "import" and what not in was) or after.split("::", 1)[0] in mine] \
                if "product_replaced" in self.defences else []
            said = [f"  {what} replaced by code written in {by}" for what, by in patched[:10]]
            said += [f"  {what}, a plain def of the product, holds {now} instead "
                     f"({'from the start of the session' if after == 'import' else 'after ' + after})"
                     for what, now, after in replaced[:10]]
            patched += [(what, "import" if after == "import" else after.split("::", 1)[0]) for what, _, after in replaced]
            # a product value the test modules' import left other than the product's own import did, where main's
            # collection shows no such thing: a test file (the change's, or one of main's a change makes matter:
            # a dormant `calc._op = operator.add` on main, adversary F-30) decides what every test sees
            was = {c[0] for c in main.changed} if main is not None else set()
            values = sorted({what for what, after, _, _ in (res.evidence.changed if res.evidence else [])
                             if after == "import" and what not in was}) if "product_values" in self.defences else []
            said += [f"  {what}: not what the product's own import left, once the test files were imported"
                     for what in values[:10]]
            patched += [(what, "import") for what in values]
            if "product_values" in self.defences and res.evidence is not None:
                left = await self._left_replaced(repo, base, tested, res.evidence, mine)
                said += [line for _, _, line in left[:10]]
                patched += [(what, after.split("::", 1)[0]) for what, after, _ in left]
            if patched:
                text = (f"{PRODUCT_PATCHED} on {on}: test code replaces the product's own code "
                        "for every test after it (main's tests then test the replacement, not the product):\n" +
                        "\n".join(said) +
                        "\nPatch inside a test (the monkeypatch fixture, mock.patch), never at import." + reach_text)
                stage.findings = sorted({f"patched:{what}:{by}" for what, by in patched})
                stage.verdicts.append({"gate": GUARD, **label, "outcome": "fail", "detail": text,
                                       "findings": stage.findings})
                return self._block(stage, ["tests", PRODUCT_PATCHED], text, commit)
            # main's tests by identity, whatever the run's outcome: a rewritten test of main waits for the human
            reasons, lines, findings = await self._against_main(repo, command, base, main, res, renamed, static_ids)
            if static.failed:  # run_anyway: the git-only guard's findings stand beside what the run showed
                reasons = [*static.reasons, *[r for r in reasons if r not in static.reasons]]
                lines = [static.detail, *lines]
                # a deleted test file's tests are gone with it: the deletion is the finding, the same on a re-merge
                # whether or not the tests ran (a human override of the deletion carries to it)
                deleted = {f.removeprefix("deleted:") for f in static.findings if f.startswith("deleted:")}
                findings = [*static.findings, *[f for f in findings if not (
                    f.startswith("test:") and f.removeprefix("test:").split("::", 1)[0] in deleted and ", removed" in f)]]
            if reasons:
                text = "\n".join(lines) + reach_text
                stage.findings = findings
                stage.verdicts.append({"gate": GUARD, **label, "outcome": "fail", "detail": text,
                                       "findings": findings})
                stage.guard_only = res.passed
                if not res.passed and set(reasons) <= {TESTS_CHANGED, TESTS_REMOVED}:
                    self._red(stack, key, res)  # its merge, checked like a commit, would go back (merge_run)
                return self._block(stage, reasons, text + ("" if res.passed else f"\n(the tests also failed:\n{detail})"),
                                   commit)
            # main's tests apart from the change's test files: only for a run that passed and a change that stands
            # so far (whatever this run shows otherwise decides without it): one pytest process fewer per failed
            # round, the CPU a loaded factory is short of
            apart_res = await apart_task if res.passed else None
            if apart_res is not None:
                tests_verdict["detail"] = (
                    f"{detail}\nmain's tests apart (main {base[:12]}'s test files, none of this change's, "
                    f"{'each in a process of its own, ' if 'each_alone' in self.defences else ''}on its product code): " + (
                        f"passed, {_counted(apart_res)}" if apart_res.passed else
                                  f"failed, exit code {apart_res.exit_code} (its output below the verdict)") + reach_text)
                tests_verdict["apart"] = {"outcome": apart_res.outcome, "exit_code": apart_res.exit_code,
                                          "seconds": round(apart_res.duration_s, 3), "tree": apart_res.tree}
            if apart_res is not None and not apart_res.passed:
                # main's tests, with main's test files alone, fail (or contradict themselves) on the change's product
                # code while they passed beside its test files: the human sees why
                text = (f"{MAIN_APART_FAILED} on {on}: run with main {base[:12]}'s test files and none of this change's"
                        f"{', each test file in a process of its own' if 'each_alone' in self.defences else ''}, "
                        "main's tests " + ("contradict themselves" if apart_res.contradictions else "fail") +
                        "; in the run of the whole tree they passed: test code changes what main's tests see (a test "
                        "file of this change, or one of main's that reaches other files' tests), or a test is flaky."
                        f"\n{apart_res.detail()}{reach_text}")
                failing = sorted(i for i, o in (apart_res.evidence.outcomes() if apart_res.evidence else {}).items()
                                 if o not in ("passed", "skipped", "xfailed", "xpassed"))
                stage.findings = [f"apart:{i}" for i in failing] or [f"apart:exit {apart_res.exit_code}"]
                stage.verdicts.append({"gate": GUARD, **label, "outcome": "fail", "detail": text,
                                       "findings": stage.findings})
                return self._block(stage, ["tests", MAIN_APART_FAILED], text, commit)
            if not res.passed:
                self._red(stack, key, res)
                stage.action, stage.reasons = "back", ["tests"]
                stage.text = f"tests gate failed on {on}:\n{detail}{reach_text}" + (
                    f"\nThe commit was tested as it would land: merged onto main's head {onto[:12]}, which moved since "
                    "it branched. Merge main into your branch (sync_main) and run the tests there." if onto else "")
                return stage
            own = _of_the_tree(res.evidence, set(copies))  # what the tree collects, main's copies left out by name
            n = len(own.collected) if own is not None else None
            summary = (f"{n} tests collected (main {base[:12]}: {len(main.collected)}), each of main's unchanged"
                       if main is not None and n is not None else "tests not counted: the command does not run pytest")
            if static_ids.renamed:
                summary += ("\nrenamed along with the code they test (the old names are gone from the whole tree): " +
                            "; ".join(f"{i} ({r})" for i, r in static_ids.renamed.items()))
            if stack:
                summary += (f"\ntested as it would land after {train} (checked green, not landed yet): merged onto main "
                            f"with them ({onto[:12]}); it lands after them, or runs again if one of them does not land")
            elif onto:
                summary += f"\ntested as it would land: merged onto main {onto[:12]} (main moved since it branched)"
            if apart_res is not None:
                summary += f"\nmain's tests apart from this change's test files passed ({_counted(apart_res)})"
            stage.verdicts.append({"gate": GUARD, **label, "outcome": "pass", "detail": summary + reach_text,
                                   "run_key": key})
            outcomes = res.evidence.outcomes() if res.evidence else {}
            self.greens.remember(Green(key, tested, "check", outcomes, collected=own))
            # the tree a task behind this one is checked on top of (or main, once this lands as tested): what it
            # collects and how each test ends are that check's baseline
            self._seed_baseline(repo, command, res.tree, own)
            if own is not None and own.reported:
                self._main_outcomes.setdefault((str(repo), command, res.tree), outcomes)
            return stage
        finally:
            await _stopped(apart_task)

    def _red(self, stack: Sequence[tuple[str, str]], key: str, res: GateResult) -> None:
        """A red verdict belongs to its tree too: a task that failed on top of the tasks ahead, once they landed
        as checked, merges into that very tree, and the queue does not run it again. Only a train's (a human
        who lands a red check over the gate gets a fresh run), never a timed-out or self-contradicting run, and
        only where the merge's own check would send it back (a failed run, main's tests' identity at most)."""
        if stack and not (res.passed or res.timed_out or res.contradictions):
            self.reds[key] = res

    async def _against_main(self, repo: Path, command: str, base: str, main: Evidence | None, res: GateResult,
                            renamed: dict[str, str], static: StaticChanges) -> tuple[list[str], list[str], list[str]]:
        """(reasons, lines for the human, one stable finding key each) from comparing the run with main's."""
        reasons: list[str] = []
        lines: list[str] = []
        findings: list[str] = []
        ev = res.evidence
        if main is None or ev is None:
            return reasons, lines, findings
        if res.timed_out or ev.collected_n is None or ev.ended < ev.sessions:
            return reasons, lines, findings  # a run cut short names no test as gone: it already failed
        if not main.reported:
            return reasons, ["main's tests could not be collected, so they were not compared"], findings
        outcomes = ev.outcomes()
        changed_ids: list[str] = []
        if "identity" in self.defences:
            main_out = self._main_outcomes.get((str(repo), command, await tree_of(repo, base)))
            if main_out is None and any(outcomes.get(i) in ("skipped", "xfailed") for i in main.collected):
                main_out = await self.main_outcomes(repo, command, base)  # learn what main skips itself
            changed_ids = changed_tests(main.collected, static, candidate_ids=ev.collected,
                                        candidate_outcomes=outcomes, main_outcomes=main_out, renamed_files=renamed,
                                        uncollectable=frozenset(split_id(e)[0] for e in ev.collect_errors))
        if "written_in" in self.defences:
            # the function pytest runs for each of main's tests is the one written where main's was: a test
            # module imported and emptied by another, before pytest collected it, keeps its ids and its source
            # (adversary D-06)
            here = set(ev.collected)
            own = "its own file"
            changed_ids += [f"{i}, runs a function written in {ev.written.get(i, own)} (on main: {main.written.get(i, own)})"
                            for i in main.collected if i in here and ev.written.get(i) != main.written.get(i)]
        if changed_ids:
            only_removed = all(", removed" in c for c in changed_ids)
            reasons.append(TESTS_REMOVED if only_removed else TESTS_CHANGED)
            lines.append(f"{TESTS_CHANGED}: " + "; ".join(changed_ids[:30]) +
                         (f"; and {len(changed_ids) - 30} more" if len(changed_ids) > 30 else ""))
            lines += _per_file(main.collected, ev.collected, renamed)
            findings += [f"test:{c}" for c in changed_ids]
        if "runner_config" not in self.defences:
            return reasons, lines, findings
        before = len(lines)
        extra = sorted(set(ev.plugins) - set(main.plugins))
        if extra:
            lines.append(f"the runner loaded plugins main's run did not: {', '.join(extra)}")
        # registered from a test module as it was imported (adversary D-14: its runtest_call wrapper swallowed
        # the assertion, so the phase did not raise as far as pytest or the reporter could tell)
        during = sorted(set(ev.collect_plugins) - set(main.collect_plugins)) if "collect_plugins" in self.defences else []
        if during:
            lines.append(f"plugins were registered while collecting that main's run did not register: {', '.join(during)}")
        if ev.inifile != main.inifile:
            lines.append(f"the runner read its configuration from {ev.inifile or 'no file'}, "
                         f"on main from {main.inifile or 'no file'}")
        if ev.addopts != main.addopts:
            lines.append(f"the runner's addopts are {ev.addopts}, on main {main.addopts}")
        if len(lines) > before:
            reasons.append(RUNNER_CHANGED)
            findings += [f"runner:{line}" for line in lines[before:]]
        return reasons, lines, findings

    async def _apart(self, repo: Path, base: str, tested: str, renamed: Mapping[str, str], command: str,
                     baseline: Awaitable[Evidence | None], own_run: Awaitable[GateResult]) -> GateResult | None:
        """Run main's tests apart (see main_apart), or nothing when there is no such tree (no test file changed).

        What a test file is comes from main's runner too (main's baseline: its `python_files`, `testpaths`,
        doctest globs and the files it collected from; a `*_tests.py` of pytest-django's is one, adversary
        F-37). A command that does not name pytest (make test) has its baseline once its run shows pytest ran
        (G-40): the apart run then waits for the change's run."""
        if "main_apart" not in self.defences:
            return None
        main = await asyncio.shield(baseline)  # (the check awaits them too; cancelling this leaves them running)
        if main is None and "python_files" in self.defences:
            ran = await asyncio.shield(own_run)
            if ran.evidence is not None and ran.evidence.reported:
                main = await self.baseline(repo, command, base, known_pytest=True)
        layout = TestLayout(doctest_globs=("test*.txt",)) if "python_files" in self.defences else TestLayout()
        if main is not None and "python_files" in self.defences:
            layout = TestLayout(tuple(main.python_files), tuple(main.testpaths),
                                tuple(main.doctest_globs) or ("test*.txt",),
                                frozenset(split_id(i)[0] for i in main.collected))
        apart = await main_tests_apart(repo, base, tested, self.scratch_root, renamed, layout)
        files = sorted({split_id(i)[0] for i in main.collected}) if main is not None and main.reported \
            and "each_alone" in self.defences else []
        if len(files) > 1:  # a change that touches no test file has them too: its tree is main's tests and its code
            wanted: dict[str, set[str]] = {}
            for i in main.collected:
                wanted.setdefault(split_id(i)[0], set()).add(i)
            # main's test files this change edits run alone as the change has them too (its tree): a test added
            # to one that cannot run alone (it reads what another file sets up) makes the file fail or skip
            # itself alone, which would excuse its others on every later change (adversary J-61, J-62)
            edited = [f for f in files if f in (await git("diff", "--name-only", "--no-renames", base, tested, "--",
                                                          *files, cwd=repo)).splitlines()]
            if edited:
                ran = await asyncio.shield(own_run)
                collected = set(ran.evidence.collected) if ran.evidence else set()
                mine = {f: wanted[f] & collected for f in edited}
            else:
                mine = {}
            return await self._each_alone(repo, apart or tested, base, command, files, wanted, tested, mine)
        # one test file: the run of main's tests apart (or the change's own run, when it has no test file) is it alone
        if apart is None:
            return None
        return await self.run(repo, apart, command, expect_pytest=counts_pytest(command), apart=True)

    async def _each_alone(self, repo: Path, tree: str, base: str, command: str, files: list[str],
                          wanted: Mapping[str, set[str]], tested: str, edited: Mapping[str, set[str]]) -> GateResult:
        """Main's test files, each in a pytest process of its own, on `tree` (the change's product code, main's test
        files). A test file's code can reach anything in its process: one of main's that does nothing on main
        (a value set to what it already is, a washer of failures while none fail) puts a later change's broken
        code right for every other file in a shared run (adversary F-30, F-36, H-41..54); alone, it reaches its
        own tests only. A file that fails alone on main itself too (it leans on another file) is main's matter,
        not the change's: it is named, and only its tests that fail alone on main may fail alone here. Each run
        must collect every test main collects from its file (a file that skips itself or fails to collect alone
        is no pass, J-62). `edited`: main's files the change edits, run alone as the change has them too, each
        to collect what the change's own run did of main's tests. Two at a time."""
        started = time.monotonic()
        gate = asyncio.Semaphore(2)

        async def alone(sha: str, path: str, want: set[str]) -> GateResult:
            async with gate:
                res = await self.run(repo, sha, command, expect_pytest=counts_pytest(command), apart=True, only=path)
            got = set(res.evidence.collected) if res.evidence else set()
            strays = sorted({split_id(i)[0] for i in got} - {path})
            missing = sorted(want - got)
            why = [f"run for {path} alone, it collected other files too: {', '.join(strays[:5])}"] if strays else []
            # (a file that fails or skips itself before collecting: none of its tests ran)
            why += [f"run alone, {path} collected {len(want) - len(missing)} of the {len(want)} tests main collects "
                    f"from it (not: {', '.join(missing[:5])})"] if missing else []
            if why:  # not restricted to the one file, or not all of it: its verdict says nothing of the file alone
                return dataclasses.replace(res, outcome="fail", contradictions=(*res.contradictions, *why))
            return res

        jobs = [alone(tree, f, wanted.get(f, set())) for f in files] + [alone(tested, f, edited[f]) for f in edited]
        done = await asyncio.gather(*jobs)
        runs = dict(zip(files, done[:len(files)], strict=True))
        runs.update({f"{f} (as this change edits it)": r for f, r in zip(edited, done[len(files):], strict=True)})
        failed = [f for f, r in runs.items() if not r.passed]
        # A file that fails alone on main too is named, never excused: what made it lean on another file may be
        # the very change that landed before this one to excuse it (adversary I-56, J-61, K-68: a test added to
        # it, a tests/__init__.py that sets the product wrong for every file but one that sets it right)
        leaning = []
        for f in failed:
            if f not in wanted:
                continue  # the change's own version of a file
            key = (str(repo), command, await tree_of(repo, base), f)
            if key not in self._alone_on_main:
                self._alone_on_main[key] = not (await alone(base, f, wanted[f])).passed
            if self._alone_on_main[key]:
                leaning.append(f)
        ev = Evidence(sessions=sum(r.evidence.sessions for r in runs.values() if r.evidence),
                      collected=[i for r in runs.values() if r.evidence for i in r.evidence.collected],
                      reports=[x for r in runs.values() if r.evidence for x in r.evidence.reports])
        tail = "\n".join(f"--- {f}, alone: exit code {runs[f].exit_code}\n{runs[f].detail()}" for f in failed)
        if leaning:
            tail = (f"{LEANS}: {', '.join(leaning)} (it leans on another test file, or a change made it: the human "
                    "decides; make each test file pass alone to end this)" + (f"\n{tail}" if tail else ""))
        first = runs[failed[0]] if failed else None
        return GateResult(GATE_TESTS, tree, "fail" if failed else "pass", first.exit_code if first else 0, tail,
                          any(r.timed_out for r in runs.values()), time.monotonic() - started, await tree_of(repo, tree),
                          tuple(f"{f}: {c}" for f in failed for c in runs[f].contradictions), ev)

    def _block(self, stage: TestsStage, reasons: list[str], text: str, commit: str, *,
               weakened: bool = True) -> TestsStage:
        stage.action, stage.reasons = "block", list(reasons)
        stage.text = text + (f"\nThe tests gate itself was weakened on {commit[:12]}: only a human override lands "
                             "this commit (or send it back with an instruction)." if weakened else
                             "\nThe run's own evidence disagrees with its exit code: look at the test code "
                             "before anything else.")
        return stage

    # --- the merge queue's run ------------------------------------------------------

    async def merge_run(self, repo: Path, command: str, merged: str, base: str,
                        protected: list[str] | tuple[str, ...] = (), *, main_branch: str | None = None) -> GateResult:
        """Test the merge result from a clean checkout, or reuse a green verdict whose inputs were the very same
        (its tree, main's tests and runner configuration at `base`, the command, the protected paths, the runner).

        `main_branch`: a merge tree no check ran (the tasks it was checked on top of left the train, or main
        moved since) is checked like a commit, the whole stage (the guard, main's tests by identity and apart
        from the change's test files, the product-patch checks): a suite run alone is what a test file of the
        change can turn green (adversary F-32, F-35). Without it (the human overrode the task's findings),
        the suite alone, as before."""
        started = time.monotonic()
        tree = await tree_of(repo, merged)
        defaults = DEFAULT_PROTECTED if "protected" in self.defences else ()
        key = await self.run_key(repo, merged, base, command, [*defaults, *protected])
        green = await self.greens.find(key, ("check", "merge"))
        if green is not None:
            self.reused += 1
            if green.outcomes is not None:
                self._main_outcomes[(str(repo), command, tree)] = green.outcomes
            self._seed_baseline(repo, command, tree, green.collected)
            return GateResult(GATE_TESTS, merged, "pass", 0,
                              f"not run again: tree {tree[:12]} is the tree of {green.commit[:12]}, tested green from "
                              f"a clean checkout with the same inputs (main {base[:12]}'s tests and runner "
                              "configuration, the command, the protected paths, the runner, the gate)",
                              False, time.monotonic() - started, tree, reused_from=green.commit, run_key=key)
        red = self.reds.get(key) if self.reuse_reds else None
        if red is not None:
            self.reused += 1
            return GateResult(GATE_TESTS, merged, "fail", red.exit_code,
                              f"not run again: tree {tree[:12]} failed the tests as {red.commit[:12]} with the same "
                              f"inputs (checked on top of the tasks then ahead, which have landed since; main "
                              f"{base[:12]})\n{red.detail()}", False, time.monotonic() - started, tree,
                              reused_from=red.commit, run_key=key)
        if main_branch is not None and "merge_check" in self.defences:
            stage = await self._check_on(repo, main_branch, merged, command, protected=protected, started=None,
                                         run_anyway=False, ahead=())
            tests = next((v for v in stage.verdicts if v.get("gate") == GATE_TESTS), {})
            # a merge whose run failed, with only main's tests' identity against it, goes back like a failed
            # run: nothing lands, and the usual cause is what landed since (a rename the merge no longer
            # completes, a module that no longer imports); the builder merges main and fixes it
            back = stage.action == "block" and tests.get("outcome") == "fail" and not stage.guard_only \
                and set(stage.reasons) <= {TESTS_CHANGED, TESTS_REMOVED}
            if stage.action == "pass":
                return GateResult(GATE_TESTS, merged, "pass", tests.get("exit_code", 0),
                                  f"checked as a commit: {stage.verdicts[-1].get('detail', '')}", False,
                                  time.monotonic() - started, tree, run_key=stage.verdicts[-1].get("run_key", key))
            return GateResult(GATE_TESTS, merged, "fail", tests.get("exit_code"),
                              f"checked as a commit: {stage.text}", False, time.monotonic() - started, tree,
                              blocks=tuple(stage.reasons) if stage.action == "block" and not back else ())
        main = self._baselines.get((str(repo), command, await tree_of(repo, base)))
        # (the human overrode the task's findings: the suite alone)
        res = await self.run(repo, merged, command, expect_pytest=bool(main is not None and main.reported))
        if res.passed:
            outcomes = res.evidence.outcomes() if res.evidence else {}
            self.greens.remember(Green(key, merged, "merge", outcomes, collected=res.evidence))  # no copies ran
            self._main_outcomes[(str(repo), command, tree)] = outcomes
            self._seed_baseline(repo, command, tree, res.evidence)
            return dataclasses.replace(res, run_key=key)
        return res


async def run_tests_gate(sandbox: Sandbox, command: str, worktree: Path, commit: str, *, timeout_s: float,
                         output_cap_bytes: int) -> GateResult:
    """One run of the gate on `commit` outside a stage (benchmarks): a clean checkout made from the repository
    `worktree` belongs to, the live outcome stream, the cross-check. Nothing is cached."""
    scratch = Path(tempfile.mkdtemp(prefix="cockpit-gate-", dir=Path(worktree).parent))
    try:
        gate = TestsGate(sandbox, scratch, timeout_s=timeout_s, output_cap_bytes=output_cap_bytes)
        return await gate.run(Path(worktree), commit, command)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["GATE_TESTS", "GateResult", "PROTECTED_CHANGED", "TESTS_CHANGED", "TestsGate", "TestsStage",
           "is_test_file", "run_tests_gate"]
