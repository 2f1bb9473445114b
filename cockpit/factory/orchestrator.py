"""The orchestrator: drives every open task, across all products at once, one stage at a time.

It owns no rule: each stage asks the domain (through the store) to move the
task, and the domain refuses what is not allowed. State lives only in the
store, so after a crash `run()` picks every open task up where the log left it:
a building task gets a fresh builder session on its worktree, a checking task
has its gate run again, a merging task is merged (idempotently).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..agents.client import ModelClient
from ..agents.loop import AgentSession, ModelUnavailable, SessionResult
from ..agents.roles import system_prompt
from ..agents.tools import WorktreeTools
from ..config import FactoryConfig
from ..domain.actors import agent_id
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from ..domain.tasks import Task, TaskState, rounds_left, tests_verdict, valid_approvals
from ..store import Store
from .gates import run_tests_gate
from .rules import load_rules
from .sandbox import Sandbox, SandboxUnavailable
from .task_tools import TaskToolbox
from .workspaces import GitError, Workspaces

log = logging.getLogger(__name__)

_OPEN_STATES = {TaskState.QUEUED, TaskState.BUILDING, TaskState.CHECKING, TaskState.REVIEWING, TaskState.MERGING}
_DIFF_LIMIT = 30_000


class Orchestrator:
    def __init__(self, config: FactoryConfig, store: Store, model: ModelClient, *,
                 sandbox: Sandbox | None = None, workspaces: Workspaces | None = None):
        self.config = config
        self.store = store
        self.model = model
        self.prices = config.price_table()
        hidden = [config.store_path.parent, config.rules_path, config.worktrees_path]
        if config.path is not None:
            hidden.append(config.path)
        self.sandbox = sandbox or Sandbox(config.factory.sandbox, hidden=hidden)
        self.workspaces = workspaces or Workspaces(config.worktrees_path)
        self._running: dict[str, asyncio.Task] = {}
        self._agents: dict[str, asyncio.Task] = {}
        self._global = asyncio.Semaphore(config.limits.max_agents)
        self._per_product = {p.name: asyncio.Semaphore(config.limits.max_agents_per_product)
                             for p in config.products}
        self._counters: dict[str, int] = defaultdict(int)
        self._wake = asyncio.Event()
        self.paused_products: set[str] = set()

    # --- the main loop -------------------------------------------------------------

    async def run(self, *, until_idle: bool = False, timeout: float | None = None) -> None:
        """Drive tasks until cancelled, or (until_idle) until no open task is left to drive."""
        await self._init_counters()
        Sandbox.check(self.config.factory.sandbox)
        for t in self.store.tasks():
            if t.state in _OPEN_STATES - {TaskState.QUEUED}:
                await self._note(t, f"resumed after restart while {t.state.value}")
        sub = self.store.subscribe()
        watcher = asyncio.create_task(self._watch(sub))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                self._schedule()
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
            watcher.cancel()
            sub.close()
            for t in list(self._running.values()):
                t.cancel()
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _watch(self, sub) -> None:
        while True:
            ev = await sub.get()
            if ev.is_task_event:
                self._wake.set()

    def _drivable(self) -> list[Task]:
        names = {p.name for p in self.config.products}
        return [t for t in self.store.tasks() if t.state in _OPEN_STATES and t.product in names
                and t.product not in self.paused_products]

    def _schedule(self) -> None:
        # round-robin across products so one busy product cannot starve the others
        by_product: dict[str, list[Task]] = defaultdict(list)
        for t in self._drivable():
            if t.id not in self._running:
                by_product[t.product].append(t)
        queues = [sorted(ts, key=lambda t: (-t.priority,)) for ts in by_product.values()]
        while any(queues):
            for q in queues:
                if q:
                    t = q.pop(0)
                    self._running[t.id] = asyncio.create_task(self._drive(t.id), name=f"drive-{t.id}")

    async def _init_counters(self) -> None:
        rows = await self.store.query(
            "SELECT DISTINCT actor FROM events WHERE kind = ?", (Kind.AGENT_STARTED.value,))
        for (actor,) in rows:
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
                if t is None or t.state not in _OPEN_STATES or t.product in self.paused_products:
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
                if after is not None and after.last_event_id == before and after.state in _OPEN_STATES:
                    await self._block(after, ["stalled"], f"no progress in stage {after.state.value}")
        except asyncio.CancelledError:
            raise
        except ModelUnavailable as e:
            await self._block(self.store.task(task_id), ["model unavailable"], str(e))
        except SandboxUnavailable as e:
            await self._block(self.store.task(task_id), ["sandbox unavailable"], str(e))
        except GitError as e:
            await self._block(self.store.task(task_id), ["git"], str(e))
        except Exception as e:
            log.exception("task %s failed", task_id)
            await self._block(self.store.task(task_id), ["error"],
                              f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}")
        finally:
            self._running.pop(task_id, None)
            self._wake.set()

    async def _append(self, t: Task, kind: str, actor: str = "system", **data: Any) -> Event | None:
        try:
            return await self.store.append(Event(kind=kind, actor=actor, product=t.product, task_id=t.id, data=data))
        except Refused as r:  # the human may have acted meanwhile; the refusal is recorded
            log.info("refused %s on %s: %s", kind, t.id, r.reason)
            return None

    async def _block(self, t: Task | None, reasons: list[str], detail: str) -> None:
        if t is None or t.state not in _OPEN_STATES:
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
            last = t.feedback[-1] if t.feedback else ""
            gate = "review" if "review" in last.split(":", 1)[0] else "tests"
            await self._block(t, [gate], f"still not passing after {max_rounds} rounds. Last feedback:\n{last}")
            return
        wt = await self._worktree(t)
        builder = t.assignee or self.new_agent("builder")
        result = await self._session("builder", builder, t, wt, self._builder_brief(t))
        after = self.store.task(t.id)
        if after is not None and after.state == TaskState.BUILDING:
            why = ("used all its turns without submitting" if result.reason == "max_turns"
                   else "stopped without submitting")
            await self._block(after, ["builder"], f"{builder} {why}. Its last words:\n{result.final_text[-2000:]}")

    async def _check(self, t: Task) -> None:
        assert t.commit is not None
        wt = await self._worktree(t)
        product = self.config.product(t.product)
        await self.store.append(Event(kind=Kind.GATE_STARTED, actor="system", product=t.product, task_id=t.id,
                                      data={"gate": "tests", "commit": t.commit, "command": product.test_command}))
        res = await run_tests_gate(self.sandbox, product.test_command, wt, t.commit,
                                   timeout_s=self.config.limits.test_timeout_s,
                                   output_cap_bytes=self.config.limits.output_cap_bytes)
        detail = f"exit code {res.exit_code}{' (timed out)' if res.timed_out else ''}\n{res.tail}"
        await self._append(t, Kind.VERDICT, gate="tests", commit=t.commit, outcome=res.outcome, detail=detail,
                           exit_code=res.exit_code, seconds=round(res.duration_s, 3))
        t = self.store.task(t.id) or t
        if res.outcome == "pass":
            await self._append(t, Kind.CHECKED)
        elif rounds_left(t, self.config.factory.max_rounds) <= 1:
            await self._block(t, ["tests"], f"tests still failing on {t.commit[:12]} after "
                                            f"{self.config.factory.max_rounds} rounds\n{detail}")
        else:
            await self._append(t, Kind.SENT_BACK, reason=f"tests gate failed on {t.commit[:12]}:\n{detail}",
                               gate="tests")

    async def _review(self, t: Task) -> None:
        if valid_approvals(t):
            await self._append(t, Kind.READY)
            return
        wt = await self._worktree(t)
        reviewer = self.new_agent("reviewer")
        product = self.config.product(t.product)
        diff = await self.workspaces.diff(self._repo(t), product.main_branch, t.commit or "HEAD")
        result = await self._session("reviewer", reviewer, t, wt, self._reviewer_brief(t, diff))
        after = self.store.task(t.id)
        if after is None:
            return
        if after.state == TaskState.REVIEWING and valid_approvals(after):
            await self._append(after, Kind.READY)
        elif after.state == TaskState.REVIEWING:
            await self._block(after, ["review"], f"{reviewer} gave no verdict: {result.final_text[-1500:]}")

    async def _merge(self, t: Task) -> None:
        assert t.commit is not None
        product = self.config.product(t.product)
        res = await self.workspaces.merge(self._repo(t), product.main_branch, t.commit,
                                          f"Merge {t.id}: {t.title}\n\nCockpit-Task: {t.id}")
        if res.ok and res.merged_commit:
            await self._append(t, Kind.MERGED, merged_commit=res.merged_commit)
            try:
                await self.workspaces.remove(t.product, t.id, self._repo(t))
            except GitError as e:
                log.warning("could not remove the worktree of %s: %s", t.id, e)
        else:
            reasons = ["merge conflict"] if res.conflict_files else ["merge"]
            files = "".join(f"\n  {f}" for f in res.conflict_files)
            await self._block(t, reasons, f"{res.detail}{files}")

    # --- agent sessions ------------------------------------------------------------

    async def _session(self, role: str, agent: str, t: Task, wt: Path, brief: str) -> SessionResult:
        limits = self.config.limits
        rc = self.config.role(role)
        async with self._per_product[t.product], self._global:
            rules = load_rules(self.config.rules_path)
            tools = WorktreeTools(wt, self.sandbox, command_timeout_s=limits.command_timeout_s,
                                  output_cap_bytes=limits.output_cap_bytes,
                                  worktree_writable=(role == "builder"))
            toolbox = TaskToolbox(role=role, agent=agent, task_id=t.id, product=t.product, worktree=wt,
                                  worktree_tools=tools, store=self.store, workspaces=self.workspaces,
                                  commit=t.commit)
            session = AgentSession(
                agent=agent, role=role, product=t.product, task_id=t.id, client=self.model.client,
                model=rc.model, max_tokens=rc.max_tokens,
                system=system_prompt(role=role, agent=agent, product=t.product, rules=rules.text),
                toolbox=toolbox, store=self.store, prices=self.prices, max_turns=limits.agent_max_turns,
                rules_hash=rules.hash,
            )
            task = asyncio.current_task()
            if task is not None:
                self._agents[agent] = task
            try:
                return await session.run(brief)
            finally:
                self._agents.pop(agent, None)

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

    def _reviewer_brief(self, t: Task, diff: str) -> str:
        tv = tests_verdict(t)
        if len(diff) > _DIFF_LIMIT:
            diff = diff[:_DIFF_LIMIT] + f"\n[... diff cut at {_DIFF_LIMIT} characters ...]"
        return "\n".join([
            f"Review task {t.id} on product '{t.product}': {t.title}",
            "",
            t.body.strip() or "(no further description)",
            "",
            f"Commit: {t.commit}",
            f"Tests gate on this commit: {tv.outcome.value if tv else 'not run'}",
            "",
            "The change (diff against main):",
            diff,
            "",
            "Approve this commit with approve(commit, note), or request_changes(note, comments).",
        ])

    async def stop_agent(self, agent: str) -> bool:
        """Cancel an agent's session cleanly; its task is re-driven or blocked by the caller."""
        task = self._agents.get(agent)
        if task is None:
            return False
        task.cancel()
        return True
