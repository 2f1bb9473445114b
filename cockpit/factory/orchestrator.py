"""The orchestrator: drives every open task, across all products at once, one stage at a time.

It owns no rule: each stage asks the domain (through the store) to move the
task, and the domain refuses what is not allowed. State lives only in the
store, so after a crash `run()` picks every open task up where the log left it:
a building task gets a fresh builder session on its worktree, a checking task
has its gate run again, a merging task is merged (idempotently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..agents.client import NO_MODEL, NO_MODEL_HINT, ModelClient, offline_reason
from ..agents.loop import AgentSession, ModelUnavailable, SessionResult
from ..agents.scripted import NO_SCRIPT_TEXT
from ..agents.tools import WorktreeTools
from ..config import FactoryConfig
from ..domain.actors import agent_id
from ..domain.budget import BudgetExceeded
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from ..domain.tasks import (AT_WORK_STATES, IN_FLIGHT_STATES, DefectState, Task, TaskState, rounds_left, tests_verdict,
                            train_ahead,
                             valid_approvals)
from ..store import reads
from ..store import Store, StoreError
from .agent_log import AgentLogWriter
from .defects import ReproResult, base_of, reproduce
from .products import factory_sandbox
from .gates import TestsGate, TestsStage
from .merge_queue import MergeQueue
from .notify_sender import WebhookSender, notifier_for, webhook_url
from .recovery import recover
from .remerge import Remerge, check_remerge
from .knowledge import Knowledge
from ..host.disk_reserve import DiskLow
from ..host.sandbox import Sandbox, SandboxUnavailable
from .scratch import clear_scratch, scratch_dir, throwaway_tree
from .task_tools import TaskToolbox
from .team import breaker_brief, exhausted, history, open_defects_text, round_line
from .workspaces import GitError, Workspaces, _run_git

log = logging.getLogger(__name__)

_DIFF_LIMIT = 30_000


class AgentPaused(Exception):
    """The product or agent was paused before the session could start: no new work, no block."""


class Orchestrator:
    def __init__(self, config: FactoryConfig, store: Store, model: ModelClient, *,
                 sandbox: Sandbox | None = None, workspaces: Workspaces | None = None):
        self.config = config
        self.store = store
        self.model = model
        self.prices = config.price_table()
        store.set_budget_limits(config.budget_limits())  # whoever opened the store, the budgets hold
        self.sandbox = sandbox or factory_sandbox(config)
        self.workspaces = workspaces or Workspaces(config.worktrees_path)
        self.knowledge = Knowledge(config, store, client=model.client, prices=self.prices,
                                   simulated=model.mode == "scripted")  # rules + memory
        self._running: dict[str, asyncio.Task] = {}
        self._agents: dict[str, asyncio.Task] = {}
        self._global = asyncio.Semaphore(config.limits.max_agents)
        self._per_product = {p.name: asyncio.Semaphore(config.limits.max_agents_per_product)
                             for p in config.products}
        self._counters: dict[str, int] = defaultdict(int)
        # one check stage per product at a time: each is tested on top of the ones checked green before it (a
        # merge train), so the tree it tests is the tree that lands and the queue does not run it again
        self._check_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._wake = asyncio.Event()
        self._fatal: StoreError | None = None  # the store cannot record: the factory stops (e.g. a full disk)
        self.paused_products: set[str] = set()
        self.notifier: WebhookSender | None = None  # delivers the outbox while the factory runs ([notify])
        self.paused_agents: set[str] = set()
        self.agent_tasks: dict[str, str] = {}  # running agent -> its task id
        # agents' scratch dirs, reproductions and test counts: outside every product tree
        self.scratch_root = config.worktrees_path / ".cockpit-scratch"
        # the tests gate owns its stage; the merge queue shares it, so a tree tested green is not tested again
        self.tests_gate = TestsGate(self.sandbox, self.scratch_root, timeout_s=config.limits.test_timeout_s,
                                    output_cap_bytes=config.limits.output_cap_bytes, store=store)
        self.merge_queue = MergeQueue(config, store, self.workspaces, self.sandbox, tests_gate=self.tests_gate)

    # --- the main loop -------------------------------------------------------------

    async def run(self, *, until_idle: bool = False, timeout: float | None = None) -> None:
        """Drive tasks until cancelled, or (until_idle) until no open task is left to drive."""
        await self._init_counters()
        # a crash may have left reservations, worktrees or commits the store disagrees with
        await recover(self.config, self.store, self.workspaces)
        await clear_scratch(self.scratch_root, [self.config.product_path(p.name) for p in self.config.products])
        Sandbox.check(self.config.factory.sandbox)
        # the toolchain scan in the background: the first agents' commands and checks need not wait for it
        warm = asyncio.create_task(self.sandbox.warm(), name="sandbox-warm")
        url = webhook_url(self.config)  # a bad [notify] stops the start, with the file and what to do
        self.store.notify_landings = self.config.notify.landings
        for t in self.store.tasks():
            if t.state in AT_WORK_STATES:
                await self._note(t, f"resumed after restart while {t.state.value}")
        sub = self.store.subscribe()
        watcher = asyncio.create_task(self._watch(sub))
        self.knowledge.start()  # watches the rules dir: an edit shows at once, in force from the next call
        agent_logs = AgentLogWriter.start(self.store, self.config)  # memory/logs/AGENT.log, for `t` and `cockpit tail`
        self.notifier = notifier_for(self.config, self.store, url)
        notifier = asyncio.create_task(self.notifier.run(), name="notify") if self.notifier else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                self._schedule()
                if self._fatal is not None:
                    raise self._fatal
                if until_idle and not self._running and not self._drivable():
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            warm.cancel()
            watcher.cancel()
            sub.close()
            for t in list(self._running.values()):
                t.cancel()
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
            await self.knowledge.stop()
            await agent_logs.stop()
            if notifier is not None:
                notifier.cancel()
                await asyncio.gather(notifier, return_exceptions=True)

    async def _watch(self, sub) -> None:
        while True:
            ev = await sub.get()
            if ev.is_task_event:
                self._wake.set()

    def _drivable(self) -> list[Task]:
        names = {p.name for p in self.config.products}
        return [t for t in self.store.tasks() if t.state in IN_FLIGHT_STATES and t.product in names
                and not self._paused(t)]

    def _paused(self, t: Task) -> bool:
        """A paused product takes no new work; nor does a paused builder (its task waits for it)."""
        return t.product in self.paused_products or (t.state == TaskState.BUILDING and t.assignee in self.paused_agents)

    def _schedule(self) -> None:
        # round-robin across products so one busy product cannot starve the others
        by_product: dict[str, list[Task]] = defaultdict(list)
        for t in self._drivable():
            if t.id not in self._running:
                by_product[t.product].append(t)
        queues = [self._serial(sorted(ts, key=lambda t: (-t.priority,))) for ts in by_product.values()]
        while any(queues):
            for q in queues:
                if q:
                    t = q.pop(0)
                    self._running[t.id] = asyncio.create_task(self._drive(t.id), name=f"drive-{t.id}")
                    self._running[t.id].add_done_callback(self._store_failed)

    def _serial(self, queue: list[Task]) -> list[Task]:
        """A serial product's tasks run one at a time, in queue order: each starts from what the last taught."""
        if not queue or not self.config.product(queue[0].product).serial:
            return queue
        product = queue[0].product
        busy = any((r := self.store.task(tid)) is not None and r.product == product for tid in self._running)
        return [] if busy else queue[:1]

    async def _init_counters(self) -> None:
        for actor, _, _ in await reads.started_agents(self.store):
            role, _, n = actor.rpartition("-")
            if n.isdigit():
                self._counters[role] = max(self._counters[role], int(n))

    def new_agent(self, role: str) -> str:
        self._counters[role] += 1
        return agent_id(role, self._counters[role])

    # --- driving one task ----------------------------------------------------------

    async def _drive(self, task_id: str) -> None:
        try:
            while True:
                t = self.store.task(task_id)
                if t is None or t.state not in IN_FLIGHT_STATES or self._paused(t):
                    return
                before = t.last_event_id
                step = {
                    TaskState.QUEUED: self._start,
                    TaskState.BUILDING: self._build,
                    TaskState.CHECKING: self._check,
                    TaskState.REVIEWING: self._review,
                    TaskState.MERGING: self._merge,
                }[t.state]
                await step(t)
                after = self.store.task(task_id)
                if after is not None and after.last_event_id == before and after.state in IN_FLIGHT_STATES:
                    await self._block(after, ["stalled"], f"no progress in stage {after.state.value}")
        except asyncio.CancelledError:
            raise
        except AgentPaused:
            return
        except BudgetExceeded as e:  # the call was not made; the human raises the budget, then retries
            t = self.store.task(task_id)
            if t is not None and t.state in IN_FLIGHT_STATES:
                await self._append(t, Kind.BLOCKED, reasons=["budget"], detail=e.detail(), budget=e.figures())
        except ModelUnavailable as e:
            await self._block(self.store.task(task_id), ["model unavailable"], str(e))
        except DiskLow as e:  # the disk a command writes to is at its reserve: a human frees it, then retries
            await self._block(self.store.task(task_id), ["disk"], str(e))
        except SandboxUnavailable as e:
            await self._block(self.store.task(task_id), ["sandbox unavailable"], str(e))
        except GitError as e:
            await self._block(self.store.task(task_id), ["git"], str(e))
        except StoreError:
            raise  # nothing can be recorded, not even a block: _store_failed stops the factory
        except Exception as e:
            log.exception("task %s failed", task_id)
            await self._block(self.store.task(task_id), ["error"],
                              f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}")
        finally:
            self._running.pop(task_id, None)
            self._wake.set()

    def _store_failed(self, drive: asyncio.Task) -> None:
        """A drive that ended on a StoreError (even one raised while blocking) stops the whole factory."""
        if not drive.cancelled() and isinstance(drive.exception(), StoreError):
            self._fatal = self._fatal or drive.exception()  # type: ignore[assignment]
            self._wake.set()

    async def _append(self, t: Task, kind: str, actor: str = "system", **data: Any) -> Event | None:
        try:
            return await self.store.append(Event(kind=kind, actor=actor, product=t.product, task_id=t.id, data=data))
        except Refused as r:  # the human may have acted meanwhile; the refusal is recorded
            log.info("refused %s on %s: %s", kind, t.id, r.reason)
            return None

    async def _block(self, t: Task | None, reasons: list[str], detail: str) -> None:
        if t is None or t.state not in IN_FLIGHT_STATES:
            return
        await self._append(t, Kind.BLOCKED, reasons=reasons, detail=detail[:4000])

    async def _note(self, t: Task, text: str) -> None:
        await self.store.append(Event(kind=Kind.NOTE, actor="system", product=t.product, task_id=t.id,
                                      data={"text": text}))

    def _repo(self, t: Task) -> Path:
        return self.config.product_path(t.product)

    async def _worktree(self, t: Task) -> Path:
        p = self.config.product(t.product)
        return await self.workspaces.ensure(t.product, self._repo(t), p.main_branch, t.id)

    # --- stages --------------------------------------------------------------------

    async def _start(self, t: Task) -> None:
        wt = await self._worktree(t)
        await self._append(t, Kind.TASK_STARTED, agent=self.new_agent("builder"), worktree=str(wt))

    async def _build(self, t: Task) -> None:
        max_rounds = self.config.factory.max_rounds
        if rounds_left(t, max_rounds) <= 0:
            await self._block(t, *exhausted(t, max_rounds))
            return
        wt = await self._worktree(t)
        builder = t.assignee or self.new_agent("builder")
        result = await self._session("builder", builder, t, wt, self._builder_brief(t))
        after = self.store.task(t.id)
        if after is not None and after.state == TaskState.BUILDING:
            if self._no_model(result):
                await self._block(after, [NO_MODEL], self._no_model_detail(builder, after))
                return
            why = ("used all its turns without submitting" if result.reason == "max_turns"
                   else "stopped without submitting")
            await self._block(after, ["builder"], f"{builder} {why}. Its last words:\n{result.final_text[-2000:]}")

    async def _check(self, t: Task) -> None:
        """One check stage per product at a time (a merge train: see `_check_one`)."""
        lock = self._check_locks[t.product]
        if lock.locked():
            checking = [o.id for o in self.store.tasks(t.product) if o.id != t.id and o.state == TaskState.CHECKING]
            await self._append(t, Kind.NOTE, text=f"waits for the check of {', '.join(checking) or 'another task'}: "
                                                  "one check per product at a time, each tested on top of the ones "
                                                  "checked green before it")
        async with lock:
            t = self.store.task(t.id) or t
            if t.state == TaskState.CHECKING and t.commit is not None:
                await self._check_one(t)

    async def _check_one(self, t: Task) -> None:
        """The tests gate owns the stage (cockpit.factory.gates.TestsGate); here its verdicts are recorded and
        acted on, then the open defects are re-run, and a human override may carry to a re-merge of main."""
        assert t.commit is not None
        product = self.config.product(t.product)
        repo = self._repo(t)
        # a human override of an earlier commit may carry to this one only if git shows it to be a merge of
        # main into that commit and nothing beyond (and the guard finds nothing new): then the tests still
        # run before anything is decided
        carry_from, remerge = await self._override_to_carry(t, repo, product.main_branch)

        async def started(data: dict[str, Any]) -> None:
            await self.store.append(Event(kind=Kind.GATE_STARTED, actor="system", product=t.product, task_id=t.id,
                                          data=data))

        stage = await self.tests_gate.check(repo, product.main_branch, t.commit, product.test_command,
                                            protected=product.protected, started=started,
                                            run_anyway=carry_from is not None,
                                            ahead=train_ahead(t, self.store.tasks(t.product)))
        for verdict in stage.verdicts:
            await self._append(t, Kind.VERDICT, **verdict)
        t = self.store.task(t.id) or t
        if stage.action == "block" and not (carry_from is not None and stage.guard_only):
            await self._block(t, stage.reasons, self._not_carried(t, remerge, stage.text))
            return
        if stage.action == "back":
            await self._back_or_block(t, stage.reasons, stage.text, gate="tests")
            return
        # an open defect is closed only by its own reproduction passing on this later commit
        still = await self._recheck_defects(t)
        t = self.store.task(t.id) or t
        if still:
            text = "\n\n".join(f"defect {d_id} still reproduces on {t.commit[:12]} ({r.why}):\n{r.tail(20)}"
                                for d_id, r in still)
            await self._back_or_block(t, ["defects"], text, gate="defects")
            return
        if stage.action == "block" and carry_from is not None:
            await self._carry_override(t, carry_from, stage, remerge)
            return
        await self._append(t, Kind.CHECKED)

    async def _override_to_carry(self, t: Task, repo: Path, main_branch: str) -> tuple[str | None, Remerge | None]:
        """The latest commit of the task a human override covers (the overridden commit, or the re-merge it was
        carried to) that its latest commit contains, if the latest commit is that commit or git shows it to be
        only a merge of main into it (cockpit.factory.remerge); and what git said. Whether the override
        carries is still the domain's call (carry_override, remerge_refusal), on these facts."""
        for o in reversed(t.overrides):
            if o.commit is None or o.commit not in t.commits:
                continue
            if o.commit == t.commit:
                return o.commit, None
            rc, _, _ = await _run_git("merge-base", "--is-ancestor", o.commit, t.commit or "", cwd=repo)
            if rc == 0:
                remerge = await check_remerge(repo, main_branch, o.commit, t.commit or "")
                return (o.commit if remerge.only_a_merge else None), remerge
        return None, None

    @staticmethod
    def _not_carried(t: Task, remerge: Remerge | None, text: str) -> str:
        """The gate's text and, when the human's earlier override does not carry to this commit, why (first, so
        no cap cuts it) and the diff the human has not seen (last)."""
        if remerge is None or remerge.only_a_merge:
            return text
        why = (f"The override of {remerge.from_commit[:12]} does not carry to {(t.commit or '')[:12]}: "
               f"{remerge.why_not()}. Only a new human override lands this commit (or send it back with an "
               "instruction).")
        return f"{why}\n\n{text}\n\n{remerge.shown}".rstrip()

    async def _carry_override(self, t: Task, from_commit: str, stage: TestsStage, remerge: Remerge | None) -> None:
        """Land on the human's word when the guard finds only what the human accepted; else ask again, saying why."""
        t = self.store.task(t.id) or t
        o = next(o for o in reversed(t.overrides) if o.commit == from_commit)
        how = ("it merges main into the overridden commit and nothing beyond (git: "
               f"{', '.join(remerge.conflicted) or 'no file'} resolved with both sides' changes only)"
               if remerge is not None else "it is the overridden commit")
        text = (f"{o.actor}'s override of {from_commit[:12]} carries to {(t.commit or '')[:12]}: {how}, its tests "
                f"pass and the guard finds only what was accepted ({', '.join(stage.findings)}). "
                f"Note on record: {o.note}")
        data: dict[str, Any] = {"from_commit": from_commit, "text": text}
        if remerge is not None:
            data["remerge"] = remerge.facts()
        try:
            await self.store.append(Event(kind=Kind.OVERRIDE_CARRIED, actor="system", product=t.product, task_id=t.id,
                                          data=data))
        except Refused as r:
            await self._block(self.store.task(t.id) or t, stage.reasons,
                              f"{stage.text}\nYour override of {from_commit[:12]} does not carry to "
                              f"{(t.commit or '')[:12]}: {r.reason}. Only a new human override lands this commit "
                              "(or send it back with an instruction).")

    async def _back_or_block(self, t: Task, reasons: list[str], text: str, *, gate: str) -> None:
        """Back to the builder with the text, or to the human with the history once the rounds are spent."""
        max_rounds = self.config.factory.max_rounds
        if rounds_left(t, max_rounds) <= 1:
            head = f"still failing ({', '.join(reasons)}) on {(t.commit or '')[:12]} after {max_rounds} rounds:\n"
            await self._block(t, reasons, f"{head}{text[-2200:]}\n\n{history(t, 1500)}")
        else:
            await self._append(t, Kind.SENT_BACK, reason=text[:4000], gate=gate)

    async def _reproduce(self, t: Task, commit: str, kind: str, reproduction: str, *,
                         fix: dict[str, str] | None = None) -> ReproResult:
        limits = self.config.limits
        return await reproduce(self.sandbox, self._repo(t), self.scratch_root, commit, kind, reproduction,
                               timeout_s=limits.command_timeout_s, output_cap_bytes=limits.output_cap_bytes,
                               test_command=self.config.product(t.product).test_command, fix=fix)

    async def _recheck_defects(self, t: Task) -> list[tuple[str, ReproResult]]:
        """Re-run every open defect's reproduction on the latest commit: close those that pass now."""
        still: list[tuple[str, ReproResult]] = []
        for d in [d for d in t.defects if d.state == DefectState.OPEN]:
            res = await self._reproduce(t, t.commit or "", d.kind, d.reproduction)
            if res.passes:
                await self._append(t, Kind.DEFECT_CLOSED, defect=d.id, commit=t.commit, exit_code=0, detail=res.tail())
            else:
                still.append((d.id, res))
        return still

    review_in_checkout = True  # a test switches it off to show the judges a builder's rewritten worktree

    @contextlib.asynccontextmanager
    async def _review_tree(self, t: Task) -> AsyncIterator[Path]:
        """Where the reviewer and the breaker look: a fresh checkout of exactly the commit under review."""
        if not self.review_in_checkout:
            yield await self._worktree(t)
            return
        async with throwaway_tree(self._repo(t), self.scratch_root, t.commit or "HEAD", label="review") as wt:
            yield wt

    async def _review(self, t: Task) -> None:
        """The reviewer and the breaker work the same commit at once; either can send it back."""
        if t.open_defects:  # opened on this very commit by a review that was interrupted (a restart)
            await self._back_or_block(t, ["defects"], f"defects open on {(t.commit or '')[:12]}; each must pass on "
                                      f"your next commit:\n\n{open_defects_text(t)}", gate="defects")
            return
        if valid_approvals(t):
            await self._append(t, Kind.READY)
            return
        product = self.config.product(t.product)
        diff = await self.workspaces.diff(self._repo(t), product.main_branch, t.commit or "HEAD")
        base = await self.tests_gate.guard.base_of(self._repo(t), product.main_branch, t.commit or "HEAD")
        reach = [str(r) for r in await self.tests_gate.reach(self._repo(t), base, t.commit or "HEAD")]
        reviewer, breaker = self.new_agent("reviewer"), self.new_agent("breaker")
        scratch = scratch_dir(self.scratch_root / "agents", f"{t.id}-{breaker}")
        max_rounds = self.config.factory.max_rounds
        try:
            # a fresh checkout of exactly the commit under review, never the builder's worktree (which its
            # builder could rewrite after submitting: the judges would read and run a decoy, C-02)
            async with self._review_tree(t) as wt:
                results = await asyncio.gather(
                    self._session("reviewer", reviewer, t, wt, self._reviewer_brief(t, diff, reach)),
                    self._session("breaker", breaker, t, wt, breaker_brief(t, diff, scratch, max_rounds),
                                  scratch=scratch),
                    return_exceptions=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for r in results:  # a stopped agent is a CancelledError here: stop_agent has blocked the task already
            if isinstance(r, Exception):
                raise r
        after = self.store.task(t.id)
        if after is None or after.state != TaskState.REVIEWING:
            return  # changes requested (back to the builder already), or blocked meanwhile
        if after.open_defects:
            await self._back_or_block(after, ["defects"], f"defects open on {(after.commit or '')[:12]}; each must pass "
                                      f"on your next commit:\n\n{open_defects_text(after)}", gate="defects")
        elif valid_approvals(after):
            await self._append(after, Kind.READY)
        else:
            r0 = results[0]
            if isinstance(r0, SessionResult) and self._no_model(r0):
                await self._block(after, [NO_MODEL], self._no_model_detail(reviewer, after))
                return
            words = r0.final_text[-1500:] if isinstance(r0, SessionResult) else ""
            await self._block(after, ["review"], f"{reviewer} gave no verdict: {words}")

    async def _merge(self, t: Task) -> None:
        await self.merge_queue.land(t.id)
        after = self.store.task(t.id)
        if after is not None and after.state == TaskState.DONE:
            try:
                await self.workspaces.remove(t.product, t.id, self._repo(t))
            except GitError as e:
                log.warning("could not remove the worktree of %s: %s", t.id, e)
            await self._reflect(after)

    async def _reflect(self, t: Task) -> None:
        """The lessons turn after a task that needed a second round or a human; never fails a done task."""
        try:
            async with self._per_product[t.product], self._global:  # a session like any other: within the limits
                await self.knowledge.reflect(t)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("lessons turn after %s failed: %s", t.id, e)

    # --- agent sessions ------------------------------------------------------------

    def _no_model(self, result: SessionResult) -> bool:
        """The session was answered by the offline scripted model's fallback: no model ever worked on it."""
        return self.model.mode == "scripted" and result.final_text.strip() == NO_SCRIPT_TEXT

    def _no_model_detail(self, agent: str, t: Task) -> str:
        return (f"{NO_MODEL_HINT}.\nThe cockpit runs offline ({offline_reason(self.config) or 'scripted model'}): "
                f"the scripted model has no script for {agent} on {t.id}, so no model worked on it. Set the key and "
                f"retry the task (cockpit retry {t.id}), or write a scenario for it in {self.config.scenarios_path}.")

    async def _session(self, role: str, agent: str, t: Task, wt: Path, brief: str, *,
                       scratch: Path | None = None) -> SessionResult:
        limits = self.config.limits
        rc = self.config.role(role)
        async with self._per_product[t.product], self._global:
            if t.product in self.paused_products or agent in self.paused_agents:
                raise AgentPaused(f"{agent} on {t.product} is paused")
            prompt = await self.knowledge.session_prompt(role=role, agent=agent, task=t)
            # only a builder writes the product's files; a breaker writes its scratch dir, outside them
            tools = WorktreeTools(wt, self.sandbox, command_timeout_s=limits.command_timeout_s,
                                  output_cap_bytes=limits.output_cap_bytes, scratch=scratch,
                                  worktree_writable=(role == "builder"), nice=limits.agent_nice)
            commit = t.commit

            async def reproduce_on(sha: str, kind: str, body: str, *, fix: dict[str, str] | None = None) -> ReproResult:
                return await self._reproduce(t, sha, kind, body, fix=fix)

            async def reproduce_on_base(sha: str, kind: str, body: str) -> ReproResult | None:
                base = await base_of(self._repo(t), sha, self.config.product(t.product).main_branch)
                return None if base is None else await self._reproduce(t, base, kind, body)

            toolbox = TaskToolbox(role=role, agent=agent, task_id=t.id, product=t.product, worktree=wt,
                                  worktree_tools=tools, store=self.store, workspaces=self.workspaces,
                                  commit=commit, main_branch=self.config.product(t.product).main_branch,
                                  reproduce=reproduce_on if role == "breaker" else None,
                                  reproduce_base=reproduce_on_base if role == "breaker" else None,
                                  memory=self.knowledge.memory)
            session = AgentSession(
                agent=agent, role=role, product=t.product, task_id=t.id, client=self.model.client,
                model=rc.model, max_tokens=rc.max_tokens,
                system=prompt.system,
                toolbox=toolbox, store=self.store, prices=self.prices, max_turns=limits.agent_max_turns,
                rules_hash=prompt.rules.hash, refresh=prompt.refresh, simulated=self.model.mode == "scripted",
            )
            task = asyncio.current_task()
            if task is not None:
                self._agents[agent] = task
                self.agent_tasks[agent] = t.id
            try:
                return await session.run(brief)
            finally:
                self._agents.pop(agent, None)
                self.agent_tasks.pop(agent, None)

    def _builder_brief(self, t: Task) -> str:
        product = self.config.product(t.product)
        max_rounds = self.config.factory.max_rounds
        lines = [
            f"Task {t.id} on product '{t.product}': {t.title}",
            "",
            t.body.strip() or "(no further description)",
            "",
            f"Round: {t.rounds - t.rounds_base + 1} of {max_rounds}",
            "Your worktree is the current directory: every path is relative to it.",
            f"The tests gate will run: {product.test_command}",
            "When done: commit, then submit.",
        ]
        if t.feedback:
            lines += ["", "Feedback on your previous round (address it first):"]
            for f in t.feedback[-3:]:
                who, _, text = f.partition(": ")
                label = "Instruction from the human" if who.startswith("human:") else f"From {who}"
                lines.append(f"{label}: {text}")
        return "\n".join(lines)

    def _reviewer_brief(self, t: Task, diff: str, reach: list[str] | None = None) -> str:
        tv = tests_verdict(t)
        if len(diff) > _DIFF_LIMIT:
            diff = diff[:_DIFF_LIMIT] + f"\n[... diff cut at {_DIFF_LIMIT} characters ...]"
        flags = (["", "This change reaches into the test runner (check each: it can make the tests report what they "
                  "did not do):", *(f"  {r}" for r in reach)] if reach else [])
        return "\n".join([
            f"Review task {t.id} on product '{t.product}': {t.title}",
            "",
            t.body.strip() or "(no further description)",
            "",
            f"Commit: {t.commit}",
            round_line(t, self.config.factory.max_rounds),
            f"Tests gate on this commit: {tv.outcome.value if tv else 'not run'}",
            *flags,
            "",
            "The change (diff against main):",
            diff,
            "",
            "Approve this commit with approve(commit, note), or request_changes(note, comments).",
        ])

    async def stop_agent(self, agent: str, *, by: str = "system") -> bool:
        """Cancel an agent's session: its task blocks for the human first (so nothing re-drives it), then
        the call is cancelled and awaited (the sandbox kills the process group of any command it was
        running), then `agent.stopped` is recorded. False if the agent is not running."""
        task = self._agents.get(agent)
        if task is None:
            return False
        task_id = self.agent_tasks.get(agent)
        t = self.store.task(task_id) if task_id else None
        if t is not None:
            await self._block(t, ["stopped"], f"{agent} was stopped by {by}. Retry to resume the task with a "
                                              "fresh session, or send it back with an instruction.")
        task.cancel()
        if task is not asyncio.current_task():
            await asyncio.wait({task})
        await self.store.append(Event(kind=Kind.AGENT_STOPPED, actor=by, product=t.product if t else None,
                                      task_id=task_id, data={"agent": agent}))
        return True

    def pause_agent(self, agent: str) -> None:
        """No new session for this agent (the one it runs now finishes)."""
        self.paused_agents.add(agent)

    def resume_agent(self, agent: str) -> None:
        self.paused_agents.discard(agent)
        self._wake.set()

    def pause_product(self, product: str) -> None:
        """No new work on this product: sessions that wait for a slot do not start."""
        self.paused_products.add(product)

    def resume_product(self, product: str) -> None:
        self.paused_products.discard(product)
        self._wake.set()
