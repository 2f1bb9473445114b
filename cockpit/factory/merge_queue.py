"""The merge queue: what is tested is exactly what lands (bors, Zuul, GitHub's merge queue).

One queue per product, served one task at a time. For the task at the head:
build the task's commit merged onto main's *current* head in a scratch
worktree, run the tests gate on that exact sha, record the verdict, and move
main to that very sha only if it passed and main has not moved meanwhile (a
compare-and-swap). If main moved, build and test again. If the merge result is
red while the branch alone was green, the task goes back to its builder with
the failing output and the tasks that landed since it branched.

The domain refuses `task.merged` unless a passing "merge" verdict names exactly
the merged sha, so main's history can only hold commits tested green.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path

from ..config import FactoryConfig
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from ..domain.tasks import (MERGE_GATE, Outcome, Task, TaskState, human_override, merge_tested_green, rounds_left,
                            train_waits_for)
from ..store import Store
from .gates import TestsGate
from ..host.sandbox import Sandbox
from .workspaces import Workspaces, _run_git

log = logging.getLogger(__name__)

MAX_RETESTS = 5


class MergeQueue:
    def __init__(self, config: FactoryConfig, store: Store, workspaces: Workspaces, sandbox: Sandbox, *,
                 tests_gate: TestsGate | None = None):
        self.config = config
        self.store = store
        self.workspaces = workspaces
        # shared with the check stage: a tree it tested green is not tested again here
        self.tests_gate = tests_gate or TestsGate(sandbox, config.worktrees_path / ".cockpit-scratch", store=store,
                                                  timeout_s=config.limits.test_timeout_s,
                                                  output_cap_bytes=config.limits.output_cap_bytes)
        self.sandbox = sandbox
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.testing: dict[str, str] = {}  # product -> task id under test

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox the queue's runs use: the tests gate's own."""
        return self.tests_gate.sandbox

    @sandbox.setter
    def sandbox(self, box: Sandbox) -> None:
        self.tests_gate.sandbox = box

    def queue(self, product: str) -> list[str]:
        """Task ids waiting to land on `product`, the one under test first."""
        waiting = [t for t in self.store.tasks(product) if t.state == TaskState.MERGING]
        waiting.sort(key=lambda t: (t.id != self.testing.get(product), t.updated_ts))
        return [t.id for t in waiting]

    async def _append(self, t: Task, kind: str, **data) -> Event | None:
        try:
            return await self.store.append(Event(kind=kind, actor="system", product=t.product, task_id=t.id,
                                                 data=data))
        except Refused as r:
            log.info("merge queue: %s refused on %s: %s", kind, t.id, r.reason)
            return None

    async def land(self, task_id: str) -> None:
        """Land one task, or send it back / block it; returns when it has left the merging state."""
        t0 = self.store.task(task_id)
        if t0 is None:
            return
        await self._after_the_train(task_id)
        async with self._locks[t0.product]:
            self.testing[t0.product] = task_id
            try:
                await self._land(task_id)
            finally:
                self.testing.pop(t0.product, None)

    TRAIN_POLL_S = 0.2

    async def _after_the_train(self, task_id: str) -> None:
        """A task checked on top of others not landed yet (a merge train) waits for them: landing after them, the
        merge is the tree its check tested, and the suite does not run again. Waits only while each of them is
        still on its way (reviewing or merging the commit it was stacked on); one leaving ends the wait."""
        said: list[str] | None = None
        while True:
            t = self.store.task(task_id)
            if t is None or t.state != TaskState.MERGING:
                return
            waits = train_waits_for(t, self.store.task)
            if not waits:
                return
            if waits != said:
                said = waits
                await self._append(t, Kind.NOTE, text=f"lands after {', '.join(waits)}: its check tested it on top "
                                                      "of them, so that tree is not tested again")
            await asyncio.sleep(self.TRAIN_POLL_S)

    async def _land(self, task_id: str) -> None:
        product = None
        for attempt in range(1, MAX_RETESTS + 1):
            t = self.store.task(task_id)
            if t is None or t.state != TaskState.MERGING or t.commit is None:
                return
            product = self.config.product(t.product)
            repo = self.config.product_path(t.product)
            message = f"Merge {t.id}: {t.title}\n\nCockpit-Task: {t.id}"
            pm = await self.workspaces.prepare_merge(repo, product.main_branch, t.commit, message)
            if pm.already:
                await self._already_landed(t, repo, product.main_branch)
                return
            if pm.merged is None:
                since = await self.workspaces.merged_since(repo, product.main_branch, t.commit)
                await self._reject(t, "merge conflict", f"{pm.detail}{_since(since)}{_override_kept(t)}")
                return
            try:
                await self._append(t, Kind.GATE_STARTED, gate=MERGE_GATE, commit=pm.merged, base=pm.base,
                                   command=product.test_command, attempt=attempt)
                # a fresh checkout of the merge commit, never the merge's scratch worktree
                # a task whose findings a human overrode: the suite alone; any other merge no check ran is
                # checked like a commit
                res = await self.tests_gate.merge_run(
                    repo, product.test_command, pm.merged, pm.base, protected=product.protected,
                    main_branch=None if human_override(t) is not None else product.main_branch)
                detail = res.detail()
                # a green run's key rides on its verdict: after a restart the same inputs are not tested again
                await self._append(t, Kind.VERDICT, gate=MERGE_GATE, commit=pm.merged, source=t.commit,
                                   base=pm.base, outcome=res.outcome, detail=detail,
                                   **({"run_key": res.run_key} if res.passed and res.run_key else {}))
                t = self.store.task(task_id) or t
                if res.blocks:  # the merge, checked like a commit, waits for the human (as the check would)
                    await self._append(t, Kind.BLOCKED, reasons=list(res.blocks), detail=detail[:4000])
                    return
                if res.outcome != Outcome.PASS.value:
                    since = await self.workspaces.merged_since(repo, product.main_branch, t.commit)
                    await self._reject(t, "merge tests",
                                       f"the branch passes alone but its merge onto main {pm.base[:12]} fails the "
                                       f"tests{_since(since)}\n{detail}")
                    return
                if t.state != TaskState.MERGING or not merge_tested_green(t, pm.merged):
                    return  # the human acted meanwhile, or the verdict was refused: never move main untested
                moved = await self.workspaces.advance(repo, product.main_branch, pm.merged, pm.base)
            finally:
                await self.workspaces.discard(repo, pm.scratch)
            if moved.ok:
                await self._append(t, Kind.MERGED, merged_commit=pm.merged, base=pm.base)
                return
            if moved.in_the_way:  # testing again changes nothing: the human clears their checkout, then retries
                await self._append(t, Kind.BLOCKED, reasons=["merge"],
                                   detail=f"{moved.detail}\nThe merge is tested green; move those files out of the "
                                          "way in your checkout (they would be overwritten), then retry.")
                return
            await self._append(t, Kind.NOTE, text=f"main moved while {pm.merged[:12]} was tested "
                                                  f"({moved.detail}); testing again")
        t = self.store.task(task_id)
        if t is not None and t.state == TaskState.MERGING:
            await self._append(t, Kind.BLOCKED, reasons=["merge"],
                               detail=f"main kept moving: {MAX_RETESTS} merge attempts, none could land")

    async def _already_landed(self, t: Task, repo: Path, main_branch: str) -> None:
        """After a crash between moving main and recording it: find the tested merge that main holds."""
        for v in reversed(t.verdicts):
            if v.gate == MERGE_GATE and v.outcome == Outcome.PASS and v.source == t.commit:
                rc, _, _ = await _run_git("merge-base", "--is-ancestor", v.commit, f"refs/heads/{main_branch}",
                                          cwd=repo)
                if rc == 0:
                    await self._append(t, Kind.MERGED, merged_commit=v.commit, base=v.base, recovered=True)
                    return
        await self._append(t, Kind.BLOCKED, reasons=["merge"],
                           detail=f"{t.commit[:12]} is already on {main_branch} but not through a tested merge; "
                                  "check the product's history")

    async def _reject(self, t: Task, reason: str, detail: str) -> None:
        """Back to the builder with the reason, or to the human when its rounds are spent."""
        if rounds_left(t, self.config.factory.max_rounds) <= 1:
            await self._append(t, Kind.BLOCKED, reasons=[reason], detail=detail[:4000])
        else:
            await self._append(t, Kind.SENT_BACK, reason=f"{reason}: {detail}"[:4000], gate="merge")


def _since(subjects: list[str]) -> str:
    tasks = [s.split(":", 1)[0].removeprefix("Merge ") for s in subjects if s.startswith("Merge T")]
    if not tasks:
        return ""
    return f" (conflicts with {', '.join(tasks)}, merged since it branched)"


def _override_kept(t: Task) -> str:
    """What happens to a human override that meets a textual conflict, said plainly (builder and human read it)."""
    o = human_override(t)
    if o is None:
        return ""
    return (f". The human's override of {(t.commit or '')[:12]} ({o.actor}: {o.note}) stays on record, but a textual "
            "conflict needs a builder: merge main into the branch (sync_main), resolve the conflict, commit and "
            "submit. If that re-merge passes its tests and the guard finds nothing beyond what the human accepted, "
            "it lands on the human's word without asking again")
