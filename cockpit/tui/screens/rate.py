"""The rate screen: does each product compound, or does the factory only make motion?

Left, the factory and every product with its verdict; right, the selected one: the verdict
with the numbers behind it, a sparkline per core metric, and a table of every metric with its
trend. Figures come from `cockpit.factory.rate` (one fold of the event log), recomputed when
new events arrived. `summary_line(rate)` gives a product pane its one-line summary.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, OptionList, Sparkline, Static
from textual.widgets.option_list import Option

from ...config import FactoryConfig
from ...domain.metrics import CORE, FACTORY, METRIC, METRICS, TOO_FEW, Rate, ScopeRate, describe_change
from ...factory.rate import ARROWS, LogReader, compute_rate, fmt_value, sparkline, summary_line
from ...store import Store
from ..pacing import PacedRepaint
from ..widgets.text_table import TextTable

__all__ = ["RateScreen", "product_summaries", "summary_line"]

DIRECTION_STYLE = {"improving": "green", "worse": "red", "flat": "", "rising": "blue", "falling": "blue",
                   "unknown": "dim"}
VERDICT_STYLE = {"compounding": "bold green", "worse": "bold red", "flat": "bold", TOO_FEW: "dim"}


async def product_summaries(store: Store, config: FactoryConfig, *, now: float | None = None) -> dict[str, str]:
    """Every product's one-line summary (for the product panes), from one fold of the log."""
    rate = await compute_rate(store, products=[p.name for p in config.products], now=now)
    return {name: summary_line(scope) for name, scope in rate.products.items()}


class MetricCard(Vertical):
    """One core metric: its name, value and trend on a line, and its sparkline per period."""

    DEFAULT_CSS = """
    MetricCard { height: 4; border: round $panel-lighten-2; padding: 0 1; }
    MetricCard > Static { height: 1; }
    MetricCard > Sparkline { height: 2; }
    MetricCard.-worse > Sparkline > .sparkline--max-color { color: $error; }
    MetricCard.-improving > Sparkline > .sparkline--max-color { color: $success; }
    """

    def __init__(self, metric: str) -> None:
        super().__init__(id=f"card-{metric}")
        self.metric = metric

    def compose(self) -> ComposeResult:
        yield Static(METRIC[self.metric].label, classes="card-title")
        yield Sparkline([])

    def show(self, scope: ScopeRate, per: str) -> None:
        t = scope.trend[self.metric]
        values = [v for v in scope.series(self.metric, per) if v is not None]
        change = describe_change(t) if t.change is not None and t.direction != "unknown" else t.direction
        title = Text.assemble((METRIC[self.metric].label, "bold"), " ",
                              fmt_value(self.metric, scope.totals.get(self.metric)), "  ",
                              (f"{ARROWS[t.direction]} {change}", DIRECTION_STYLE[t.direction]))
        self.query_one(".card-title", Static).update(title)
        self.query_one(Sparkline).data = values or [0.0]
        for cls in ("-worse", "-improving"):
            self.set_class(t.direction == cls[1:], cls)


class RateScreen(PacedRepaint, Screen):
    """`RateScreen(store, config)`; `now` and `since` pin the window (tests, reports of the past)."""

    DEFAULT_CSS = """
    RateScreen #rate-body { height: 1fr; }
    RateScreen #rate-scopes { width: 34; height: 1fr; border: round $panel-lighten-2; }
    RateScreen #rate-detail { width: 1fr; height: 1fr; padding: 0 1; }
    RateScreen #rate-window { height: 1; padding: 0 1; background: $panel; }
    RateScreen #rate-verdict { height: auto; margin: 0 0 1 0; }
    RateScreen #rate-cards { grid-size: 3; grid-gutter: 0 1; height: auto; grid-rows: 4; }
    RateScreen #rate-table { height: auto; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="rate.back"),
        Binding("w", "per('week')", "Per week", id="rate.per-week"),
        Binding("d", "per('day')", "Per day", id="rate.per-day"),
        Binding("r", "reload", "Refresh", id="rate.refresh"),
    ]

    def __init__(self, store: Store, config: FactoryConfig, *, now: float | None = None,
                 since: float | None = None, refresh_s: float = 30.0) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.now = now
        self.since = since
        self.refresh_s = refresh_s
        self.rate: Rate | None = None
        self.per: str | None = None  # None: the rate's own (weeks when there are 3, else days)
        self.selected = FACTORY
        self._loaded_at_event = -1
        self._reader = LogReader()  # reads only what was appended since the last refresh

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Folding the event log…", id="rate-window")
        with Horizontal(id="rate-body"):
            yield OptionList(id="rate-scopes")
            with VerticalScroll(id="rate-detail"):
                yield Static(id="rate-verdict")
                with Grid(id="rate-cards"):
                    for metric in CORE:
                        yield MetricCard(metric)
                yield TextTable(id="rate-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rate-scopes", OptionList).border_title = "Rate"
        table = self.query_one("#rate-table", DataTable)
        for key, label in (("metric", "metric"), ("trend", "per period"), ("total", "window"),
                           ("direction", "trend"), ("help", "what it is")):
            table.add_column(label, key=key)
        self.reload()
        if self.now is None and self.refresh_s > 0:
            self.set_interval(self.refresh_s, self._maybe_reload)

    # --- loading -------------------------------------------------------------------

    def _maybe_reload(self) -> None:
        if self.store.last_event_id != self._loaded_at_event:
            self.reload()

    @work(exclusive=True, group="rate")
    async def reload(self) -> None:
        """Fold the log again (in a thread) and redraw; one at a time, the newest wins."""
        at_event = self.store.last_event_id
        rate = await compute_rate(self.store, since=self.since, products=[p.name for p in self.config.products],
                                  now=self.now if self.now is not None else time.time(), reader=self._reader)
        self._loaded_at_event = at_event
        self.rate = rate
        self.show_rate()

    # --- drawing -------------------------------------------------------------------

    @property
    def period(self) -> str:
        return self.per or (self.rate.trend_per if self.rate else "week")

    def show_rate(self) -> None:
        rate = self.rate
        if rate is None:
            return
        from datetime import datetime

        self.query_one("#rate-window", Static).update(
            f"{datetime.fromtimestamp(rate.since):%Y-%m-%d} → {datetime.fromtimestamp(rate.until):%Y-%m-%d %H:%M} · "
            f"per {self.period} (trend per {rate.trend_per}) · ↑ improving ↓ worse → flat · * weighs in the verdict")
        scopes = self.query_one("#rate-scopes", OptionList)
        keep = self.selected
        scopes.clear_options()
        names = [FACTORY, *rate.products]
        for name in names:
            s = rate.scopes[name]
            label = Text.assemble(("factory" if name == FACTORY else name, "bold"), "\n  ",
                                  (s.verdict.verdict, VERDICT_STYLE.get(s.verdict.verdict, "")),
                                  (" · demo" if s.demo else "", "italic dim"))
            scopes.add_option(Option(label, id=name))
        self.selected = keep if keep in rate.scopes else FACTORY
        scopes.highlighted = names.index(self.selected)
        self.show_scope()

    def show_scope(self) -> None:
        if self.rate is None:
            return
        scope = self.rate.scopes[self.selected]
        per = self.period
        v = scope.verdict
        name = "the factory" if self.selected == FACTORY else self.selected
        verdict = Text.assemble((f"{name}: ", "bold"), (v.verdict, VERDICT_STYLE.get(v.verdict, "")),
                                ("  (demo history: simulated)" if scope.demo else "", "italic"), "\n", v.line)
        if v.caveat:
            verdict.append("\n" + v.caveat, style="yellow")
        self.query_one("#rate-verdict", Static).update(verdict)
        for card in self.query(MetricCard):
            card.show(scope, per)
        table = self.query_one("#rate-table", DataTable)
        table.clear()
        for m in METRICS:
            t = scope.trend[m.name]
            change = f" {describe_change(t)}" if t.change is not None and t.direction != "unknown" else ""
            table.add_row(Text(m.label + (" *" if m.name in CORE else ""), style="bold" if m.name in CORE else ""),
                          Text(sparkline(scope.series(m.name, per)), style=DIRECTION_STYLE[t.direction]),
                          Text(fmt_value(m.name, scope.totals.get(m.name)), justify="right"),
                          Text(f"{ARROWS[t.direction]} {t.direction}{change}", style=DIRECTION_STYLE[t.direction]),
                          m.help, key=m.name)

    @on(OptionList.OptionHighlighted, "#rate-scopes")
    def _select(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.selected:
            self.selected = event.option.id
            self.show_scope()

    # --- actions -------------------------------------------------------------------

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_per(self, per: str) -> None:
        self.per = per
        self.show_rate()

    def action_reload(self) -> None:
        self.reload()
