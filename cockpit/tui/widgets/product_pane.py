"""One pane per product: its tasks, their gate lights and spend; blocked rows stand out.

The pane shows the store's projection (`store.tasks(product)`) and nothing
else: it decides no rule, it only draws what the domain folded.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
import math

from textual import events
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Container, Vertical
from textual.markup import escape
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey

from ...domain.tasks import AT_WORK_STATES, Task, TaskState, gate_lights
from ...domain.visible import visible_line
from ...domain import format as fmt
from .. import safe
from ..agents import AgentState
from .row_table import RowCachedTable

GATES = ("tests", "review", "defects", "budget")
"""Gate light columns, in the order they are shown: t, r, d, $."""

_GATE_LABELS = {"tests": "t", "review": "r", "defects": "d", "budget": "$"}
_TITLE_WIDTH = 32


class TaskTable(RowCachedTable):
    """The tasks of one product, a row each (key: the task id): title, state, a light per gate, spend, and a note:
    why it waits for the human, or what landed.

    What the agents do second by second is drawn below the table, not in it: a DataTable re-renders every
    visible cell whenever one cell changes, far too dear for text that changes many times a second."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"task-table--blocked", "task-table--doing"}
    """`task-table--blocked`: the rows of blocked tasks; `task-table--doing`: the activity column (cockpit.tcss)."""

    MIN_DOING = 4
    """The activity column never narrows below this (past it the table would scroll sideways)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cursor_foreground_priority="renderable",
                         id=id, classes=classes)
        self.show_cursor = False
        self.blocked: set[str] = set()
        self._rows: dict[str, tuple[object, ...]] = {}
        self._colors: dict[str, Style] = {}
        self._doing_width = 40

    def on_mount(self) -> None:
        self.add_column("id", key="id")
        self.add_column("title", key="title")
        self.add_column("state", key="state")
        for gate in GATES:
            self.add_column(_GATE_LABELS[gate], key=gate)
        self.add_column("spend", key="spend")
        self.add_column("note", key="doing", width=self._doing_width)

    def on_resize(self) -> None:
        self._fit_doing()

    def _fit_doing(self) -> None:
        """The activity column takes what the others leave, so the line is as long as the pane allows."""
        columns = self.columns
        doing = columns.get(ColumnKey("doing"))
        if doing is None or not self.size.width:
            return
        fixed = sum(col.get_render_width(self) for key, col in columns.items() if key.value != "doing")
        width = max(self.size.width - fixed - 2 * self.cell_padding - 1, self.MIN_DOING)
        if width != self._doing_width:
            self._doing_width = doing.width = width
            self._require_update_dimensions = True
            for task_id, raw in self._rows.items():  # the notes cut to the new width, nothing else changed
                self.set_cells(task_id, {"doing": self._cells(raw)[-1]})
            self.redraw_all()

    def on_focus(self) -> None:
        self.show_cursor = True

    def on_blur(self) -> None:
        """Only the focused pane shows its cursor: the keys act on what the human sees."""
        self.show_cursor = False

    @property
    def selected_task_id(self) -> str | None:
        if not self.row_count or not self.is_valid_row_index(self.cursor_row):
            return None
        return self.ordered_rows[self.cursor_row].key.value

    def select_task(self, task_id: str) -> bool:
        try:
            index = self.get_row_index(task_id)
        except Exception:  # RowDoesNotExist
            return False
        self.move_cursor(row=index)
        return True

    # --- drawing -----------------------------------------------------------------

    def _theme_colors(self) -> dict[str, Style]:
        v = self.app.get_css_variables()
        fg = Color.parse(v.get("foreground", "#e0e0e0"))
        bg = Color.parse(v.get("background", "#121212"))
        return {
            "pass": Style(color=Color.parse(v.get("success", "green")).rich_color),
            "fail": Style(color=Color.parse(v.get("error", "red")).rich_color),
            "wait": Style(color=fg.blend(bg, 0.6).rich_color),
            "blocked": Style(bold=True),
            "doing": Style(color=fg.blend(bg, 0.35).rich_color),
        }

    def notify_style_update(self) -> None:
        """A theme change recolours the lights (cells are Rich Text, so they hold colours)."""
        super().notify_style_update()
        if self.is_attached and self._rows:
            colors = self._theme_colors()
            if colors != self._colors:
                self._colors = colors
                for task_id, raw in self._rows.items():
                    self._put(task_id, raw, redraw=True)

    def _cells(self, raw: tuple[object, ...]) -> list[object]:
        task_id, title, state, lights, spend, doing = raw
        c = self._colors
        state_text = Text(str(state), style=c["blocked"] if state == TaskState.BLOCKED.value else "")
        return [task_id, safe.line(title), state_text,
                *(Text("●", style=c[light]) for light in lights),  # type: ignore[union-attr]
                Text(str(spend), justify="right"),
                Text(fmt.truncate(visible_line(doing), self._doing_width), style=c["doing"], no_wrap=True)]

    def _put(self, task_id: str, raw: tuple[object, ...], *, redraw: bool = False) -> None:
        old = self._rows.get(task_id)
        if old == raw and not redraw:
            return
        cells = self._cells(raw)
        if old is None:
            self.add_row(*cells, key=task_id)
        else:
            keys = ["id", "title", "state", *GATES, "spend", "doing"]
            self.set_cells(task_id, {key: cell for key, cell, was, now in zip(keys, cells, _flat(old), _flat(raw),
                                                                             strict=True) if redraw or was != now})
        self._rows[task_id] = raw

    def show(self, tasks: list[Task]) -> None:
        """Bring the rows in line with `tasks` (store order); changed cells only, the cursor stays."""
        if not self._colors:
            self._colors = self._theme_colors()
        self.blocked = {t.id for t in tasks if t.state == TaskState.BLOCKED}
        wanted = {t.id for t in tasks}
        for gone in [k for k in self._rows if k not in wanted]:
            self.remove_row(gone)
            del self._rows[gone]
        for t in tasks:
            lights = gate_lights(t)
            state = t.state.value
            raw = (t.id, fmt.truncate(t.title, _TITLE_WIDTH), state, tuple(lights[g] for g in GATES),
                   fmt.task_money(t.spend_usd, t.simulated_usd), self._doing_of(t))
            self._put(t.id, raw)
        self._order([t.id for t in sorted(tasks, key=lambda t: t.state != TaskState.BLOCKED)])
        self.call_after_refresh(self._fit_doing)  # a longer title or spend narrows what is left

    def _order(self, wanted: list[str]) -> None:
        """Rows in `wanted` order (blocked first, then the store's): a blocked task is never scrolled out of
        sight below the others. The cursor stays on its task."""
        if [row.key.value for row in self.ordered_rows] == wanted:
            return
        selected = self.selected_task_id
        if self.reorder(wanted) and selected is not None:
            self.select_task(selected)

    def _doing_of(self, t: Task) -> str:
        if t.state == TaskState.BLOCKED:
            return "⚠ " + fmt.block_summary(t.blocked_by, t.block_detail, 200)
        if t.state == TaskState.DONE:
            return f"merged {fmt.short_sha(t.merged_commit)}" if t.merged_commit else ""
        if t.state == TaskState.MERGING:
            return "in the merge queue"
        return ""

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        style = super()._get_row_style(row_index, base_style)
        if row_index >= 0 and self.blocked:
            rows = self.ordered_rows
            if row_index < len(rows) and rows[row_index].key.value in self.blocked:
                style += self.get_component_rich_style("task-table--blocked")
        return style


def _flat(raw: tuple[object, ...]) -> list[object]:
    task_id, title, state, lights, spend, doing = raw
    return [task_id, title, state, *lights, spend, doing]  # type: ignore[misc]


class ProductPane(Vertical):
    """A bordered pane: its tasks, a line per agent at work (what it does now), spend against budget and the merge
    queue. Title `shop · 4 tasks · 1 active · 1 blocked`; subtitle `▕███░░░▏ $1.20 / $5.00 · merge T5⚙ T7`.
    """

    def __init__(self, product: str, *, budget_usd: float | None = None, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.product = product
        self.budget_usd = budget_usd
        self.spend_usd = 0.0
        self.counts: dict[str, int] = {}
        self.queue: list[str] = []
        self.testing: str | None = None
        self.agent_lines: list[str] = []
        self._summary = ""

    def compose(self) -> ComposeResult:
        yield PaneSummary("", classes="summary")
        yield TaskTable()
        yield Static("", classes="agents", markup=False)

    @property
    def table(self) -> TaskTable:
        return self.query_one(TaskTable)

    def on_mount(self) -> None:
        self.query_one(".agents", Static).display = False
        self._retitle()

    def show(self, tasks: list[Task], spend_usd: float | None = None, budget_usd: float | None = None) -> None:
        if spend_usd is not None:
            self.spend_usd = spend_usd
        if budget_usd is not None:
            self.budget_usd = budget_usd
        self.table.show(tasks)
        counts: dict[str, int] = {}
        for t in tasks:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        self.counts = counts
        self.set_class(bool(counts.get(TaskState.BLOCKED.value)), "-blocked")
        self.set_class(self.budget_usd is not None and self.spend_usd > self.budget_usd, "-over-budget")
        self._retitle()

    def show_agents(self, agents: list[AgentState]) -> None:
        """One line per agent at work: `builder-3 T4 ▸ write_file shop/export.py` (a short pane clips them first)."""
        lines = [visible_line(f"{'⏸ ' if a.paused else ''}{a.agent} {a.task_id or ''} {a.line}".rstrip())
                 for a in agents]
        if lines == self.agent_lines:
            return
        same_height = len(lines) == len(self.agent_lines)
        self.agent_lines = lines
        box = self.query_one(".agents", Static)
        if box.display != bool(lines):
            box.display = bool(lines)  # (setting it, even unchanged, costs a layout of the whole screen)
        box.update("\n".join(lines), layout=not same_height)  # a new line of text needs no new layout

    def show_queue(self, queue: list[str], testing: str | None = None) -> None:
        if (queue, testing) != (self.queue, self.testing):
            self.queue, self.testing = list(queue), testing
            self._retitle()

    def _retitle(self) -> None:
        total = sum(self.counts.values())
        parts = [f"[b]{escape(visible_line(self.product))}[/b]", f"{total} task{'s' if total != 1 else ''}"]
        blocked = self.counts.get(TaskState.BLOCKED.value, 0)
        active = sum(self.counts.get(s, 0) for s in AT_WORK_STATES)
        if active:
            parts.append(f"{active} active")
        if blocked:
            parts.append(f"[b]{blocked} blocked[/b]")
        self.border_title = " · ".join(parts)
        line = fmt.spend_line(self.spend_usd, self.budget_usd)
        if self.budget_usd:
            used = self.spend_usd / self.budget_usd
            colour = "$error" if used > 1 else "$warning" if used >= 0.8 else "$success"
            bar, _, rest = line.partition(" ")
            line = f"[{colour}]{bar}[/] {rest}"
        sub = [line]
        if self.queue:
            sub.append("merge " + escape(visible_line(" ".join(f"{t}⚙" if t == self.testing else t for t in self.queue))))
        self.border_subtitle = " · ".join(sub)
        summary = f"▸ {self.border_title} · {self.border_subtitle}"
        if summary != self._summary:
            self._summary = summary
            # one line, as wide as the pane: its size never depends on the text, so no layout of the screen
            self.query_one(PaneSummary).update(summary, layout=False)


class PaneSummary(Static, can_focus=True):
    """A collapsed pane's one line (its title, counts and spend); focusing or clicking it opens the pane."""

    def on_focus(self) -> None:
        pane = self.parent
        box = pane.parent if pane is not None else None
        if isinstance(pane, ProductPane) and isinstance(box, ProductPanes):
            box.expand(pane.product, focus=True)

    def on_click(self, event: events.Click) -> None:
        self.focus()


class ProductPanes(Container):
    """The product panes. When the terminal is too short to give each pane a few rows (k9s and lazygit at 80x24),
    every pane but one collapses to its summary line, so every product stays in sight with its counts; the open
    one is the pane the human works in (focus, `n`, the palette), else the first with a blocked task."""

    MIN_PANE_HEIGHT = 7
    """Border, header, three rows and an agent line: below this per pane, the panes collapse."""

    def __init__(self, *children, id: str | None = None) -> None:
        super().__init__(*children, id=id)
        self.expanded: str | None = None

    @property
    def panes(self) -> list[ProductPane]:
        return list(self.query_children(ProductPane))

    def on_resize(self) -> None:
        self.fit()

    def columns(self) -> int:
        screen = self.screen
        return 3 if screen.has_class("-very-wide") else 2 if screen.has_class("-wide") else 1

    def fit(self) -> None:
        panes = self.panes
        if not panes or not self.size.height:
            return
        rows = math.ceil(len(panes) / self.columns())
        compact = self.size.height < rows * self.MIN_PANE_HEIGHT
        names = [p.product for p in panes]
        open_one = self.expanded if self.expanded in names else next(
            (p.product for p in panes if p.counts.get(TaskState.BLOCKED.value)), names[0])
        self.set_class(compact, "-compact")
        for p in panes:
            p.set_class(compact and p.product != open_one, "-collapsed")

    def expand(self, product: str, *, focus: bool = False) -> None:
        """Open `product`'s pane (the others collapse if the terminal is short) and bring it into view."""
        self.expanded = product
        self.fit()
        pane = next((p for p in self.panes if p.product == product), None)
        if pane is None:
            return

        def show() -> None:
            if focus:
                pane.table.focus()
            pane.scroll_visible(animate=False)

        self.call_after_refresh(show)
