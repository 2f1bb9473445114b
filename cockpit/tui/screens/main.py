"""The main screen: what needs the human, one pane per product, the activity stream.

Keys act on the selected task: the highlighted row of the focused product pane
or the highlighted item of the "Needs you" strip. The screen enforces no rule:
it calls the same command functions as the CLI and shows a refusal as it
comes from the domain.

Refreshes are throttled twice over: the bridge posts at most ~20 batches a
second (one message per batch, never per event), and the figures that cost a
query (burn rate) are recomputed at most once a second, and only when spend
moved.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from functools import partial

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding

from textual.events import DescendantFocus
from textual.widgets import DataTable, OptionList

from ...config import FactoryConfig
from ...domain.events import Event, Kind
from ...domain.tasks import Task, TaskState
from ...factory import commands
from ...agents.client import offline_reason
from ...factory.meter import burn_rate
from ...store import Store, reads
from ...domain import format as fmt
from .. import queries
from .task_actions import TaskActions
from ..bridge import run_bridge
from ..messages import EventsArrived
from ..widgets.activity import ActivityLog
from ..widgets.needs_you import NeedsYou
from ..widgets.product_pane import ProductPane, ProductPanes, TaskTable
from ..widgets.status_bar import Figures, StatusBar
from ..widgets.footer import FittedFooter

FIGURES_EVERY_S = 1.0
"""How often spend and burn rate may be recomputed (only when spend moved)."""
AGENTS_EVERY_S = 0.25
BLOCK_TOASTS = 3
"""At most this many blocks pop a toast of their own within BLOCK_TOAST_WINDOW_S; the rest are folded into one
toast naming them, every FOLD_EVERY_S at most: a burst of blocks (100 a second) never floods the screen."""
BLOCK_TOAST_WINDOW_S = 8.0
FOLD_EVERY_S = 2.0
NOTICES_EVERY_S = 5.0
"""How often a cockpit that does not run the sender itself reads the outbox for the header's failing mark."""
"""How often the panes' agent lines are redrawn while agents stream (the activity stream runs at the bridge's pace)."""


class MainScreen(TaskActions):
    """Reads the store's projection; live through the coalescing bridge."""

    AUTO_FOCUS = ""
    """on_mount chooses: the Needs you strip when something waits (its task's pane open), else the first pane."""

    BINDINGS = [
        Binding("enter", "open_task", "Open", id="open", priority=True, key_display="⏎",
                tooltip="Open the selected task: gates, diff, defects, review, transcripts"),
        Binding("a", "approve", "Approve", id="approve",
                tooltip="Land the selected blocked task anyway: a human override, with a note"),
        Binding("b", "send_back", "Send back", id="send-back",
                tooltip="Send the selected blocked task back to its builder with an instruction"),
        Binding("r", "retry", "Retry", id="retry", tooltip="Resume the selected blocked task where it stopped"),
        Binding("n", "next_blocked", "Next blocked", id="next-blocked",
                tooltip="Select the next task that waits for you"),
        Binding("t", "agent_log", "Log", id="log", tooltip="The log of the selected task's agent, full screen"),
        Binding("c", "new_task", "New task", id="new-task", tooltip="Add a task to a product"),
        # the app's `N`, shown here (on the main screen only: the others keep their footers)
        Binding("N", "app.notifications", "Notices", id="main.notifications", key_display="N",
                tooltip="Notices sent, pending and failed, per channel; retry the failed"),
        Binding("e", "edit_task", "Edit", id="edit", show=False, tooltip="Change the selected task"),
        Binding("plus", "raise_budget", "Budget", id="raise-budget", show=False, key_display="+",
                tooltip="Raise the budget that binds the selected task"),
    ]

    def __init__(self, store: Store, config: FactoryConfig) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.panes: dict[str, ProductPane] = {}
        self._source: TaskTable | NeedsYou | None = None
        self._figures_dirty = True
        self._burn = 0.0
        self._agents_dirty: set[str] = set()
        self._block_toasts: deque[float] = deque()  # when the recent block toasts went up (monotonic)
        self._folded: list[str] = []  # blocked tasks waiting for the one toast that names them
        self._notices_failing = False  # read from the outbox when another cockpit runs the sender
        self.notices_checked = 0  # outbox reads done (tests wait for one)

    @property
    def _offline(self) -> str | None:
        """Why the agents this cockpit drives talk to the scripted model (None: online, or driven elsewhere)."""
        model = getattr(self.orchestrator, "model", None)
        if getattr(model, "mode", None) != "scripted":
            return None
        return offline_reason(self.config) or "scripted model"

    # --- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(self.app.title, id="status-bar")
        yield NeedsYou(id="needs-you")
        with ProductPanes(id="panes"):
            for product in self.config.products:
                yield self._new_pane(product.name, product.budget_usd)
            for name in self._unconfigured_products():
                yield self._new_pane(name, None)
        yield ActivityLog(id="activity")
        yield FittedFooter(compact=True)

    def _new_pane(self, name: str, budget: float | None) -> ProductPane:
        pane = ProductPane(name, budget_usd=budget)
        self.panes[name] = pane
        return pane

    def _unconfigured_products(self) -> list[str]:
        """Products with tasks in the store but no longer in factory.toml: still shown, never hidden."""
        names: list[str] = []
        for t in self.store.tasks():
            if t.product not in self.panes and t.product not in names:
                names.append(t.product)
        return names

    @property
    def needs_you(self) -> NeedsYou:
        return self.query_one(NeedsYou)

    @property
    def activity(self) -> ActivityLog:
        return self.query_one(ActivityLog)

    async def on_mount(self) -> None:
        self.refresh_tasks()
        if self.needs_you.task_ids:
            self.needs_you.focus()  # start where the human is needed
        else:
            first = next((p for p in self.panes.values() if p.table.row_count), None)
            if first is not None:
                self.focus_product(first.product)
        self.refresh_figures()
        self.set_interval(FIGURES_EVERY_S, self.refresh_figures)
        self.set_interval(AGENTS_EVERY_S, self._draw_agents)
        self.set_interval(NOTICES_EVERY_S, self._check_notices)
        # who is at work, from every start/finish in the log (older than anything the bridge brings next)
        self.board.apply(await queries.lifecycle_events(self.store))
        self.refresh_agents()
        self.run_worker(run_bridge(self.store, self), name="bridge", group="bridge", exclusive=True)

    # --- live updates ------------------------------------------------------------

    async def on_events_arrived(self, message: EventsArrived) -> None:
        """One batch from the bridge: one refresh of the panes, one write to the activity stream."""
        try:
            events = message.events
            touched = self.board.apply(events)
            if message.history or any(e.is_task_event or e.kind.startswith("spend.") or e.kind == Kind.BUDGET_RAISED
                                      for e in events):
                self._figures_dirty = True
                await self._mount_new_panes()
                self.refresh_tasks()
            if message.history:
                self.refresh_agents()
            else:
                self._agents_dirty |= touched  # drawn by the agents timer: a few times a second is live enough
            self.activity.add_events(events)
            if not message.history:
                self._toasts(events)
        finally:
            message.consumed.set()

    def on_resize(self) -> None:
        self.call_after_refresh(self._place_toasts)

    def _place_toasts(self) -> None:
        """Toasts rise from above the Activity stream, so its newest lines stay readable end to end."""
        activity = self.activity
        above = activity.outer_size.height if activity.display else 0
        for rack in self.query("#textual-toastrack"):  # the rack Textual gives every screen
            rack.styles.margin = (0, 0, above + 1, 0)

    def _toasts(self, events: list[Event]) -> None:
        """A task that blocks or merges is worth a toast, wherever the human is looking."""
        for e in events:
            if e.kind == Kind.BLOCKED:
                now = time.monotonic()
                while self._block_toasts and now - self._block_toasts[0] > BLOCK_TOAST_WINDOW_S:
                    self._block_toasts.popleft()
                if len(self._block_toasts) >= BLOCK_TOASTS:  # a burst: folded into one toast naming them
                    self._folded.append(str(e.task_id))
                    if len(self._folded) == 1:
                        self.set_timer(FOLD_EVERY_S, self._toast_folded, name="folded block toasts")
                    continue
                self._block_toasts.append(now)
                why = fmt.block_summary([str(r) for r in e.data.get("reasons") or []], str(e.data.get("detail", "")), 90)
                self.app.notify(f"{e.task_id} ({e.product}) waits for you: {why}", title="Blocked", severity="warning",
                                timeout=8)
            elif e.kind == Kind.SENT_BACK and e.data.get("gate") == "merge" and "human's override" in str(
                    e.data.get("reason", "")):
                self.app.notify(f"{e.task_id}: your override stays on record, but main changed under it (a merge "
                                "conflict): its builder merges main and resolves it; then it lands on your word.",
                                title="Override meets a conflict", severity="warning", timeout=10)
            elif e.kind == Kind.OVERRIDE_CARRIED:
                self.app.notify(f"{e.task_id}: your override carries to the builder's re-merge (same guard finding, "
                                "tests pass): it is landing.", title="Override carried", timeout=8)
            elif e.kind == Kind.MERGED:
                t = self.store.task(e.task_id or "")
                title = f": {fmt.truncate(t.title, 50)}" if t else ""
                self.app.notify(f"{e.task_id}{title} landed on {e.product}.", title="Merged", timeout=5)

    def _toast_folded(self) -> None:
        """One toast for the blocks of a burst that did not get their own."""
        ids, self._folded = self._folded, []
        if ids:
            more = f", … ({len(ids) - 8} more)" if len(ids) > 8 else ""
            self.app.notify(f"{len(ids)} more tasks wait for you: {', '.join(ids[:8])}{more}. n: the next one",
                            title="Blocked", severity="warning", timeout=8)

    async def _mount_new_panes(self) -> None:
        new = [self._new_pane(name, None) for name in self._unconfigured_products()]
        if new:
            await self.query_one("#panes").mount_all(new)

    def refresh_tasks(self) -> None:
        """Redraw from the store's in-memory projection (cheap: no I/O)."""
        selected = self.selected_task_id
        strip_had_focus = self.needs_you.has_focus
        tasks = self.store.tasks()
        by_product: dict[str, list[Task]] = {name: [] for name in self.panes}
        for t in tasks:
            by_product.setdefault(t.product, []).append(t)
        orchestrator = self.orchestrator
        mq = getattr(orchestrator, "merge_queue", None)
        for name, pane in self.panes.items():
            spend, budget = queries.product_spend(self.store, self.config, name)
            pane.show(by_product[name], spend, budget)
            if mq is not None:
                pane.show_queue(mq.queue(name), mq.testing.get(name))
            else:  # no factory in this process: what waits to land, from the store alone
                pane.show_queue([t.id for t in by_product[name] if t.state == TaskState.MERGING])
        self.needs_you.show([t for t in tasks if t.state == TaskState.BLOCKED])
        if strip_had_focus and self.needs_you.disabled:
            self._focus_in_pane(selected)
        self._show_figures()
        self.query_one(ProductPanes).fit()

    def _draw_agents(self) -> None:
        if self._agents_dirty:
            dirty, self._agents_dirty = self._agents_dirty, set()
            self.refresh_agents(dirty)
            self._show_figures()

    def refresh_agents(self, products: set[str] | None = None) -> None:
        for name, pane in self.panes.items():
            if products is None or name in products:
                pane.show_agents(self.board.working(name))

    def refresh_figures(self) -> None:
        if self._figures_dirty:
            self._figures_dirty = False
            self._load_burn()
        self._show_figures()

    @work(exclusive=True, group="figures")
    async def _load_burn(self) -> None:
        self._burn = await burn_rate(self.store, now=self.app.clock())  # type: ignore[attr-defined]
        self._show_figures()

    @work(exclusive=True, group="notices")
    async def _check_notices(self) -> None:
        """The header's mark when the sender runs in another cockpit: a notice whose last delivery failed."""
        if getattr(self.orchestrator, "notifier", None) is not None:
            return  # this cockpit's own sender knows first
        failing = await reads.notices_failing(self.store)
        self.notices_checked += 1
        if failing != self._notices_failing:
            self._notices_failing = failing
            self._show_figures()

    def _show_figures(self) -> None:
        bars = self.query(StatusBar)
        if not bars:
            return  # a figure arrived from a worker as the screen closed
        spend = queries.factory_spend(self.store, self.config, self.app.clock())  # type: ignore[attr-defined]
        bars.first().show(Figures(
            needs_you=len(self.needs_you.task_ids), today_usd=spend["today"] or 0.0, day_limit_usd=spend["day_limit"],
            total_usd=spend["total"] or 0.0, factory_limit_usd=spend["factory_limit"], burn_usd_per_hour=self._burn,
            working=len(self.board.working()), note=self.app.sub_title, offline=self._offline or "",
            sim_today_usd=spend["sim_today"] or 0.0, sim_total_usd=spend["sim_total"] or 0.0,
            notify_failing=self._notify_failing()))

    def _notify_failing(self) -> bool:
        """This cockpit's sender's flag, or (another cockpit runs it) what the outbox says."""
        notifier = getattr(self.orchestrator, "notifier", None)
        return bool(notifier.failing) if notifier is not None else self._notices_failing

    def _focus_in_pane(self, selected: str | None) -> None:
        """The strip emptied under the human: carry on with the same task, in its pane."""
        task = self.store.task(selected) if selected else None
        pane = self.panes.get(task.product) if task else None
        if pane is None:
            pane = next((p for p in self.panes.values() if p.table.row_count), None)
        if pane is not None:
            if task is not None:
                pane.table.select_task(task.id)
            self.focus_product(pane.product)

    # --- selection -----------------------------------------------------------------

    @property
    def selected_task_id(self) -> str | None:
        """The task under the cursor of the widget that last had focus (pane or strip)."""
        source = self._source
        if source is None or not source.is_attached:
            focused = self.focused
            source = focused if isinstance(focused, (TaskTable, NeedsYou)) else None
        return source.selected_task_id if source is not None else None

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        if isinstance(event.widget, (TaskTable, NeedsYou)):
            self._source = event.widget
        pane = event.widget.parent
        if isinstance(event.widget, TaskTable) and isinstance(pane, ProductPane):
            box = self.query_one(ProductPanes)
            if box.expanded != pane.product:
                box.expanded = pane.product
                box.fit()

    @on(OptionList.OptionHighlighted, "#needs-you")
    def _follow_strip(self, event: OptionList.OptionHighlighted) -> None:
        """Keep the product pane's cursor on the item the human highlights in the strip."""
        if not self.needs_you.has_focus:
            return  # a refresh re-highlighting the strip must not move the human's cursor
        task = self.store.task(event.option.id) if event.option.id else None
        if task is not None and task.product in self.panes:
            self.panes[task.product].table.select_task(task.id)
            self.query_one(ProductPanes).expand(task.product)  # a short terminal opens its pane

    @on(OptionList.OptionSelected, "#needs-you")
    @on(DataTable.RowSelected)
    def _open_selected(self) -> None:
        """A click (or enter) on an item opens it."""
        self.action_open_task()

    def select_task(self, task_id: str, *, focus_pane: bool = False) -> None:
        task = self.store.task(task_id)
        if task is None:
            return
        pane = self.panes.get(task.product)
        in_strip = self.needs_you.select_task(task_id)
        if pane is not None:
            pane.table.select_task(task_id)
            # open its pane (a short terminal collapses the others) and scroll it into view
            self.query_one(ProductPanes).expand(task.product, focus=not (in_strip and not focus_pane))
        if in_strip and not focus_pane:
            self.needs_you.focus()

    def focus_product(self, product: str) -> None:
        if product in self.panes:
            self.query_one(ProductPanes).expand(product, focus=True)

    # --- actions -------------------------------------------------------------------

    def action_open_task(self) -> None:
        task = self._selected_task()
        if task is not None:
            self.app.open_task(task.id)  # type: ignore[attr-defined]

    def action_new_task(self) -> None:
        from .task_form import TaskForm

        task_id = self.selected_task_id
        task = self.store.task(task_id) if task_id else None
        focused_product = task.product if task else None

        async def done(form: dict | None) -> None:
            if not form:
                return
            ok = await self._act("New task", form["product"], commands.queue_task(
                self.store, self.config, product=form["product"], title=form["title"], body=form["body"],
                priority=form["priority"], actor=self.human),
                done=f"Queued on {form['product']}: {form['title']}")
            if ok:
                self.focus_product(form["product"])

        self.app.push_screen(TaskForm(self.config, product=focused_product), done)

    def action_next_blocked(self) -> None:
        tasks = self.store.tasks()
        if not any(t.state == TaskState.BLOCKED for t in tasks):
            self.notify("Nothing is blocked.")
            return
        ids = [t.id for t in tasks]
        current = self.selected_task_id
        if current in ids:
            i = ids.index(current) + 1
            tasks = tasks[i:] + tasks[:i]
        nxt = next(t for t in tasks if t.state == TaskState.BLOCKED)
        self.select_task(nxt.id)

    def system_commands(self) -> Iterator[SystemCommand]:
        """This screen's entries in the command palette."""
        yield SystemCommand("Approve selected task", "Human override: land the selected blocked task, with a note",
                            self.action_approve)
        yield SystemCommand("Send back selected task", "Back to the builder with an instruction",
                            self.action_send_back)
        yield SystemCommand("Retry selected task", "Resume a blocked task where it stopped", self.action_retry)
        yield SystemCommand("Next blocked task", "Select the next task that waits for you",
                            self.action_next_blocked)
        yield SystemCommand("New task", "Add a task to a product", self.action_new_task)
        for name in self.panes:
            yield SystemCommand(f"Go to {name}", f"Focus the {name} pane", partial(self.focus_product, name),
                                discover=False)
