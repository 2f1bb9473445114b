"""The human's actions on a task, shared by the main screen and the task screen.

Each key asks for what the action needs (a note, an instruction, an amount),
then calls the same function as the CLI in `cockpit.factory.commands`. The
screen enforces nothing: a refusal comes from the domain (and is recorded by
the store) and is shown as it is.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from ...config import FactoryConfig
from ...domain.errors import Refused
from ...domain.tasks import Task, TaskState
from ...factory import commands
from ...store import Store, StoreError
from ...domain import format as fmt
from ..pacing import PacedRepaint
from .prompt import ConfirmScreen, PromptScreen
from .task_form import TaskForm

if TYPE_CHECKING:
    from ..agents import AgentBoard


def positive_usd(text: str) -> str | None:
    """None when `text` is a positive amount of USD, else why not."""
    try:
        usd = float(text.lstrip("$"))
    except ValueError:
        return f"{text!r} is not an amount in USD (e.g. 5 or 2.50)"
    return None if math.isfinite(usd) and usd > 0 else "The amount must be more than zero."


class TaskActions(PacedRepaint, Screen):
    """A screen with a selected task: `selected_task_id` says which."""

    store: Store
    config: FactoryConfig

    @property
    def selected_task_id(self) -> str | None:  # pragma: no cover - each screen says
        raise NotImplementedError

    @property
    def human(self) -> str:
        return self.config.factory.human

    @property
    def orchestrator(self) -> Any:
        return getattr(self.app, "orchestrator", None)

    @property
    def board(self) -> "AgentBoard":
        return self.app.board  # type: ignore[attr-defined]

    def _selected_task(self) -> Task | None:
        task_id = self.selected_task_id
        task = self.store.task(task_id) if task_id else None
        if task is None:
            self.notify("Select a task first.", severity="warning")
        return task

    def _describe_task(self, task: Task) -> str:
        lines = [f"{task.id} · {task.product} · {task.title}", f"state: {task.state.value}"]
        if task.state == TaskState.BLOCKED:
            lines.append(f"blocked: {fmt.block_summary(task.blocked_by, task.block_detail, 200)}")
        return "\n".join(lines)

    async def _act(self, what: str, subject: str, action: Awaitable[Any], *, done: str | None = None) -> bool:
        """Run one command; the domain's refusal is shown as it is, never second-guessed."""
        try:
            await action
        except Refused as r:
            self.notify(r.reason, title=f"{what} refused", severity="error", timeout=8)
        except StoreError as e:
            self.notify(str(e), title=f"{what} failed", severity="error", timeout=12)
        else:
            self.notify(done or f"{subject}: {what.lower()} recorded.", title=what)
            return True
        return False

    # --- on the task -------------------------------------------------------------------------

    def action_approve(self) -> None:
        task = self._selected_task()
        if task is None:
            return

        async def done(note: str | None) -> None:
            if note:
                await self._act("Override", task.id,
                                commands.approve_override(self.store, task.id, actor=self.human, note=note))

        self.app.push_screen(
            PromptScreen(f"Approve {task.id} (human override)", context=self._describe_task(task),
                         placeholder="Why may it land? Recorded with your name.",
                         required="A note is required: it is recorded with the override."),
            done,
        )

    def action_send_back(self) -> None:
        task = self._selected_task()
        if task is None:
            return

        async def done(instruction: str | None) -> None:
            if instruction:
                await self._act("Send back", task.id,
                                commands.send_back(self.store, task.id, actor=self.human, instruction=instruction))

        self.app.push_screen(
            PromptScreen(f"Send {task.id} back", context=self._describe_task(task),
                         placeholder="What should the builder do? It reads this first.",
                         required="An instruction is required: the builder reads it first."),
            done,
        )

    async def action_retry(self) -> None:
        task = self._selected_task()
        if task is not None:
            await self._act("Retry", task.id, commands.retry(self.store, task.id, actor=self.human))

    def action_raise_budget(self) -> None:
        """Raise the budget the engine picks for this task (factory/commands.py `task_raise_choice`) by an amount."""
        task = self._selected_task()
        if task is None:
            return
        try:
            choice = commands.task_raise_choice(self.store, task.id)
        except Refused as r:
            self.notify(r.reason, title="Raise budget", severity="warning")
            return

        async def done(amount: str | None) -> None:
            if not amount:
                return
            usd = float(amount.lstrip("$"))
            after = " Press r to retry the task." if choice.scope is None else ""
            await self._act("Raise budget", task.id,
                            commands.raise_task_budget(self.store, task.id, usd=usd, actor=self.human),
                            done=f"{task.id}: {choice.label} raised by {fmt.money(usd)}.{after}")

        self.app.push_screen(
            PromptScreen(f"Raise {choice.label}", context=self._describe_task(task), placeholder="USD to add, e.g. 5",
                         required="An amount is required.", check=positive_usd),
            done,
        )

    def action_edit_task(self) -> None:
        task = self._selected_task()
        if task is None:
            return

        async def done(form: dict | None) -> None:
            if form:
                await self._act("Edit", task.id, commands.edit_task(
                    self.store, task.id, actor=self.human, title=form["title"], body=form["body"],
                    priority=form["priority"]))

        self.app.push_screen(TaskForm(self.config, task=task), done)

    # --- on the task's agent ------------------------------------------------------------------

    def selected_agent(self) -> str | None:
        """The agent the agent keys act on: by default, the one at work on the selected task."""
        task_id = self.selected_task_id
        state = self.board.current_agent(task_id) if task_id else None
        return state.agent if state else None

    def _agent_or_warn(self) -> str | None:
        agent = self.selected_agent()
        if agent is None:
            self.notify("No agent has worked on this task yet.", severity="warning")
        return agent

    def action_agent_log(self) -> None:
        agent = self._agent_or_warn()
        if agent is not None:
            self.app.open_agent_log(agent)  # type: ignore[attr-defined]

    async def action_pause_agent(self) -> None:
        """Pause the agent (no new session for it), or resume it when it is paused."""
        agent = self._agent_or_warn()
        if agent is None:
            return
        state = self.board.agents.get(agent)
        if state is not None and state.paused:
            await self._act("Resume", agent, commands.resume_agent(self.store, self.orchestrator, agent, actor=self.human))
        else:
            await self._act("Pause", agent, commands.pause_agent(self.store, self.orchestrator, agent, actor=self.human),
                            done=f"{agent} paused: it starts no new session until you resume it (p).")

    def action_stop_agent(self) -> None:
        agent = self._agent_or_warn()
        if agent is None:
            return

        async def done(yes: bool | None) -> None:
            if yes:
                await self._act("Stop", agent, commands.stop_agent(self.store, self.orchestrator, agent, actor=self.human),
                                done=f"{agent} stopped; its task waits for you.")

        self.app.push_screen(ConfirmScreen(f"Stop {agent}?", "Its session is cancelled now and its task blocks for you: "
                                                             "retry it or send it back with an instruction."), done)
