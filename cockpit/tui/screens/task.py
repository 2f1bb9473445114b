"""One task, all of it: gate verdicts, the diff, open defects, the reviewers' words, its agents' transcripts.

Every action is one key in the footer and goes through cockpit.factory.commands,
exactly as on the main screen and the command line. The screen stays live: its
own bridge refreshes it when the task's events arrive, and the diff is read by
git in a worker, never on the UI's time.
"""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import ContentSwitcher, DataTable, Log, Static, Tab, Tabs

from ...config import FactoryConfig
from ...domain.events import Event
from ...domain.tasks import DefectState, Task, TaskState, gate_lights, human_override, missing_gates
from ...domain.visible import visible, visible_line
from ...factory.agent_log import LineMaker, agent_of
from ...store import Store
from ...domain import format as fmt
from .. import queries, safe
from .task_actions import TaskActions
from ..bridge import run_bridge
from ..messages import EventsArrived
from ..widgets.text_table import TextTable
from ..widgets.footer import FittedFooter


def _table(id: str, columns: tuple[str, ...], **kwargs) -> DataTable:
    table = TextTable(id=id, cursor_type="row", **kwargs)
    for col in columns:
        table.add_column(col, key=col)
    return table


TABS = ("gates", "diff", "defects", "review", "agents", "history")
_LIGHT = {"pass": ("●", "$text-success"), "fail": ("●", "$text-error"), "wait": ("○", "$text-muted")}
_GATE_LABEL = {"tests": "tests", "review": "review", "defects": "defects", "budget": "budget"}


class TaskScreen(TaskActions):
    BINDINGS = [
        Binding("escape", "back", "Back", id="task.back"),
        Binding("a", "approve", "Approve", id="task.approve", tooltip="Human override: land it anyway, with a note"),
        Binding("b", "send_back", "Send back", id="task.send-back", tooltip="Back to the builder with an instruction"),
        Binding("r", "retry", "Retry", id="task.retry", tooltip="Resume where it stopped"),
        Binding("plus", "raise_budget", "Budget", id="task.raise-budget", key_display="+",
                tooltip="Raise the budget that binds this task"),
        Binding("p", "pause_agent", "Pause", id="task.pause", tooltip="Pause or resume the task's agent"),
        Binding("x", "stop_agent", "Stop", id="task.stop", tooltip="Stop the task's agent now"),
        Binding("e", "edit_task", "Edit", id="task.edit", tooltip="Change the title, body or priority"),
        Binding("t", "agent_log", "Log", id="task.log", tooltip="The selected agent's log, full screen"),
        *(Binding(str(i + 1), f"tab('{tab}')", tab.title(), show=False, id=f"task.tab-{tab}")
          for i, tab in enumerate(TABS)),
    ]

    def __init__(self, store: Store, config: FactoryConfig, task_id: str) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.task_id = task_id
        self._agent: str | None = None  # chosen in the agents tab
        self._agent_rows: list[tuple[str, ...]] = []
        self._agents_dirty = True
        self._transcript_agent: str | None = None
        self._maker = LineMaker()
        self._transcript_seen = 0  # the last event id in the transcript shown / the history shown
        self._history_seen = 0
        self._diff_of: tuple[str | None, str | None] = ("?", None)

    @property
    def selected_task_id(self) -> str | None:
        return self.task_id

    @property
    def shown_task(self) -> Task | None:
        return self.store.task(self.task_id)

    def selected_agent(self) -> str | None:
        return self._agent or super().selected_agent()

    # --- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="task-head")
        yield Tabs(*(Tab(f"{i + 1} {tab.title()}", id=f"tab-{tab}") for i, tab in enumerate(TABS)), id="task-tabs")
        with ContentSwitcher(initial="gates", id="task-pages"):
            with Vertical(id="gates"):
                yield Static("", id="gate-summary")
                yield _table("verdicts", ("gate", "commit", "outcome", "by", "detail"), zebra_stripes=True)
            with VerticalScroll(id="diff"):
                yield Static("", id="diff-label", markup=False)
                yield Static("", id="diff-body")
            with VerticalScroll(id="defects"):
                yield Static("", id="defects-body")
            with VerticalScroll(id="review"):
                yield Static("", id="review-body")
            with Vertical(id="agents"):
                yield _table("agent-table", ("agent", "role", "state", "doing"))
                yield Log(id="transcript", max_lines=5000)
            yield Log(id="history", max_lines=5000)
        yield FittedFooter(compact=True)

    def on_mount(self) -> None:
        self.refresh_task()
        self._refresh_agents(force=True)
        self.load_history()
        self.set_interval(0.5, self._refresh_agents)
        self.run_worker(run_bridge(self.store, self, history=0), name="task-bridge", group="bridge", exclusive=True)

    async def on_events_arrived(self, message: EventsArrived) -> None:
        """Task events redraw the task; its agents' events extend the transcript and history as they come."""
        try:
            mine = [e for e in message.events if e.task_id == self.task_id]
            if any(e.is_task_event for e in mine):
                self.refresh_task()
            if mine:
                self._agents_dirty = True
                self._extend(mine)
        finally:
            message.consumed.set()

    def _extend(self, events: list[Event]) -> None:
        log = self.query_one("#transcript", Log)
        history = self.query_one("#history", Log)
        for e in events:
            eid = e.id or 0
            if (eid > self._transcript_seen and self._transcript_agent and agent_of(e) == self._transcript_agent
                    and e.kind in queries.TRANSCRIPT_KINDS):
                self._transcript_seen = eid
                made = self._maker.feed(e)
                if made is not None:
                    log.write(made[1])
            if eid > self._history_seen and e.kind not in queries.NOISY_KINDS:
                self._history_seen = eid
                line = fmt.event_line(e)
                if line is not None:
                    history.write_line(visible_line(line))

    # --- drawing -----------------------------------------------------------------------------

    def refresh_task(self) -> None:
        task = self.shown_task
        if task is None:
            self.query_one("#task-head", Static).update(f"No task {self.task_id}")
            return
        self._head(task)
        self._gates(task)
        self._defects(task)
        self._review(task)
        if (task.commit, task.merged_commit) != self._diff_of:
            self._diff_of = (task.commit, task.merged_commit)
            self.load_diff()

    def _head(self, task: Task) -> None:
        lights = gate_lights(task)
        pieces: list[str | tuple[str, str]] = [(f"{task.id}", "bold"), f" · {visible_line(task.product)} · ",
                                               (visible_line(task.title), "bold"),
                                               "\n", (task.state.value, "bold $text-error" if task.state == TaskState.BLOCKED
                                                      else "bold")]
        if task.state == TaskState.BLOCKED:
            pieces.append(f" — {visible_line(fmt.block_summary(task.blocked_by, task.block_detail, 100))}")
        pieces.append("   ")
        for gate in ("tests", "review", "defects", "budget"):
            mark, style = _LIGHT[lights[gate]]
            pieces += [(mark, style), f" {_GATE_LABEL[gate]}  "]
        budget = f" / {fmt.money(task.budget_usd)}" if task.budget_usd is not None else ""
        pieces.append(f"· spend {fmt.task_money(task.spend_usd, task.simulated_usd)}{budget} · round {task.rounds + 1}")
        if task.assignee:
            pieces.append(f" · {visible_line(task.assignee)}")
        self.query_one("#task-head", Static).update(Content.assemble(*pieces))
        self.sub_title = f"{task.id} {task.state.value}"

    def _gates(self, task: Task) -> None:
        lines = []
        if task.commit:
            missing = missing_gates(task)
            lines.append(f"latest commit {fmt.short_sha(task.commit)} · "
                         + ("every gate passed" if not missing else "still needs: " + ", ".join(missing)))
        else:
            lines.append("nothing committed yet")
        override = human_override(task)
        if override is not None:
            carried = (f" (carried from {fmt.short_sha(override.carried_from)}: a re-merge of main with the same "
                       "guard finding)" if override.carried_from else "")
            lines.append(f"human override by {override.actor}: {override.note}{carried}")
        failing = next((v for v in reversed(task.verdicts) if v.gate in ("tests", "merge") and v.outcome.value == "fail"
                        and task.commit in (v.commit, v.source)), None)
        assertion = fmt.failing_assertion(failing.detail) if failing is not None else ""
        if assertion:
            lines.append(f"failing on {fmt.short_sha(failing.commit)} ({failing.gate}): {assertion}")
        if task.state == TaskState.BLOCKED and task.block_detail:
            lines += ["", "why it waits for you:", task.block_detail.strip()]
        self.query_one("#gate-summary", Static).update(safe.text("\n".join(lines)))
        table = self.query_one("#verdicts", DataTable)
        table.clear()
        for i, v in enumerate(task.verdicts):
            stale = v.commit != task.commit and v.source != task.commit
            outcome = Text(v.outcome.value.upper(), style="bold green" if v.outcome.value == "pass" else "bold red")
            if stale:
                outcome.append(" (older commit)", style="dim")
            detail = fmt.failing_assertion(v.detail) if v.outcome.value == "fail" else ""
            table.add_row(v.gate, fmt.short_sha(v.commit), outcome, v.actor, fmt.one_line(detail or v.detail, 120),
                          key=str(i))

    def _defects(self, task: Task) -> None:
        body = self.query_one("#defects-body", Static)
        if not task.defects:
            body.update("No defect reported on this task.")
            return
        parts: list = []
        for d in sorted(task.defects, key=lambda d: d.state != DefectState.OPEN):
            head = Text.assemble((f"{d.id} ", "bold"), (d.state.value.upper(), "bold red" if d.state == DefectState.OPEN
                                                           else "bold green"),
                                 f" · {visible_line(d.title)} · found by {visible_line(d.actor)} on "
                                 f"{fmt.short_sha(d.commit)}")
            if d.closed_by:
                head.append(f" · closed by {visible_line(d.closed_by)}")
            parts += [head, Text(f"reproduction ({d.kind}):", style="dim")]
            parts.append(Syntax(visible(d.reproduction), "python" if d.kind == "test_file" else "bash", word_wrap=True,
                                background_color="default"))
            if d.detail:
                parts += [Text("it failed with:", style="dim"), safe.text(d.detail.strip()[-1500:])]
            parts.append(Text(""))
        from rich.console import Group

        body.update(Group(*parts))

    def _review(self, task: Task) -> None:
        out = Text()
        if task.approvals:
            out.append("Approvals\n", style="bold")
            for a in task.approvals:
                counts = a.commit == task.commit and a.actor not in task.authors
                out.append(f"  ✓ {a.actor} @{fmt.short_sha(a.commit)}{'' if counts else ' (older commit)'}: ")
                out.append(f"{a.note or '(no note)'}\n")
        if task.feedback:
            out.append("Feedback, oldest first\n", style="bold")
            for f in task.feedback:
                who, _, text = f.partition(": ")
                out.append(f"  {who}: ", style="bold")
                out.append(text.strip() + "\n")
        if task.overrides:
            out.append("Human overrides\n", style="bold")
            for o in task.overrides:
                out.append(f"  {o.actor} @{fmt.short_sha(o.commit)}: {o.note}\n")
        self.query_one("#review-body", Static).update(safe.shown(out) if out.plain else "No review yet.")

    @work(exclusive=True, group="diff")
    async def load_diff(self) -> None:
        task = self.shown_task
        if task is None:
            return
        label, diff = await queries.task_diff(self.config, task)
        self.query_one("#diff-label", Static).update(visible(label))
        body = self.query_one("#diff-body", Static)
        body.update(Syntax(visible(diff), "diff", word_wrap=False, background_color="default") if diff else "")

    def _refresh_agents(self, force: bool = False) -> None:
        """The agents table from the board (no I/O); at most twice a second while they stream."""
        if not (self._agents_dirty or force):
            return
        self._agents_dirty = False
        table = self.query_one("#agent-table", DataTable)
        rows = []
        for st in self.board.of_task(self.task_id):
            state = "paused" if st.paused else "working" if st.working else "done"
            rows.append((st.agent, st.role, state, fmt.one_line(st.line, 100)))
        if rows == self._agent_rows:
            return
        self._agent_rows = rows
        keep = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row, key=row[0])
        if rows:
            table.move_cursor(row=min(keep, len(rows) - 1))
        if self._transcript_agent is None and rows:
            self.show_transcript(rows[-1][0])

    @work(exclusive=True, group="transcript")
    async def show_transcript(self, agent: str) -> None:
        """Read the agent's events on this task back from the store; new ones are appended as they come."""
        self._transcript_agent = agent
        self._maker = LineMaker()
        log = self.query_one("#transcript", Log)
        log.border_title = f"{agent} on {self.task_id} · t: full log"
        events = await queries.transcript_events(self.store, self.task_id, agent)
        log.clear()
        log.write("".join(made[1] for e in events if (made := self._maker.feed(e)) is not None))
        # events newer than the read arrive through the bridge; older ones were just written
        self._transcript_seen = events[-1].id or 0 if events else self.store.last_event_id

    @on(DataTable.RowHighlighted, "#agent-table")
    def _agent_chosen(self, event: DataTable.RowHighlighted) -> None:
        agent = event.row_key.value if event.row_key is not None else None
        if agent and event.data_table.has_focus and agent != self._transcript_agent:
            self._agent = agent
            self.show_transcript(agent)

    @work(exclusive=True, group="history")
    async def load_history(self) -> None:
        events = await queries.task_history(self.store, self.task_id)
        log = self.query_one("#history", Log)
        log.clear()
        log.write_lines([visible_line(line) for e in events if (line := fmt.event_line(e)) is not None])
        self._history_seen = max(self._history_seen, events[-1].id or 0) if events else self._history_seen

    # --- keys ----------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_tab(self, tab: str) -> None:
        self.query_one(Tabs).active = f"tab-{tab}"

    @on(Tabs.TabActivated, "#task-tabs")
    def _show_page(self, event: Tabs.TabActivated) -> None:
        self.query_one(ContentSwitcher).current = event.tab.id.removeprefix("tab-") if event.tab and event.tab.id else None

    @property
    def page(self) -> str | None:
        return self.query_one(ContentSwitcher).current
