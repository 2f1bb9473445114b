"""Spend: per product (a table, and a sparkline of the last 14 days), the budgets and how long they last.

Figures come from the meter (cockpit.factory.meter) and the ledger; they are
re-read every few seconds while the screen is shown, in a worker.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Label, Sparkline, Static

from ...config import FactoryConfig
from ...domain.budget import Scope
from ...factory import meter
from ...store import Store
from ...domain import format as fmt
from .. import queries
from ..pacing import PacedRepaint
from ..widgets.text_table import TextTable
from ..widgets.footer import FittedFooter

DAYS = 14
REFRESH_S = 3.0
_TICKS = "▁▂▃▄▅▆▇█"


def text_sparkline(values: list[float]) -> str:
    """`▁▁▃▇█`: one character per value, scaled to the largest."""
    top = max(values, default=0.0)
    if top <= 0:
        return _TICKS[0] * len(values)
    return "".join(_TICKS[min(int(v / top * (len(_TICKS) - 1) + 0.5), len(_TICKS) - 1)] if v > 0 else " "
                   for v in values).replace(" ", _TICKS[0])


class SpendScreen(PacedRepaint, Screen):
    BINDINGS = [Binding("escape", "back", "Back", id="spend.back")]

    def __init__(self, store: Store, config: FactoryConfig) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.loaded = 0  # refreshes done (tests wait for the first)

    def compose(self) -> ComposeResult:
        yield Static("", id="spend-summary")
        with Vertical(id="spend-body"):
            yield TextTable(id="spend-products", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="spend-trend"):
                yield Label(f"factory, last {DAYS} days ", id="trend-label")
                yield Sparkline([], id="trend", summary_function=max)
            yield TextTable(id="spend-budgets", cursor_type="row")
        yield FittedFooter(compact=True)

    def on_mount(self) -> None:
        products = self.query_one("#spend-products", DataTable)
        for col in ("product", f"last {DAYS} days", "spent", "budget", "used", "burn/h", "reserved", "calls",
                    "cache read"):
            products.add_column(col, key=col)
        budgets = self.query_one("#spend-budgets", DataTable)
        for col in ("budget", "spent", "reserved", "limit", "left", "burn/h", "lasts"):
            budgets.add_column(col, key=col)
        budgets.border_title = "Budgets"
        products.border_title = "By product"
        self.load()
        self.set_interval(REFRESH_S, self.load)

    @work(exclusive=True, group="spend")
    async def load(self) -> None:
        now = self.app.clock()  # type: ignore[attr-defined]
        rows = {r.key: r for r in await meter.spend_by(self.store, "product")}
        per_day = await queries.spend_per_day(self.store, days=DAYS, now=now)
        total = await meter.totals(self.store)
        burn = await meter.burn_rate(self.store, now=now)
        projected = await meter.projection_end_of_day(self.store, now=now)
        budgets = await meter.budget_lines(self.config, self.store, now=now)
        names = [p.name for p in self.config.products]
        names += sorted(k for k in rows if k not in names and k != "(none)")

        # every read first, then the tables refilled in one go: a refresh never shows a half-filled table
        product_rows = []
        for name in names:
            r = rows.get(name) or meter.SpendRow(name)
            spent, limit = queries.product_spend(self.store, self.config, name)
            used = f"{spent / limit:.0%}" if limit else "–"
            product_burn = await meter.burn_rate(self.store, now=now, scope=(Scope.PRODUCT, name))
            trend = Text(text_sparkline(per_day.get(name, [0.0] * DAYS)), style="bold")
            product_rows.append((name, (name, trend, fmt.money(r.settled_usd, precise=True),
                                        fmt.money(limit) if limit is not None else "none", used, fmt.money(product_burn),
                                        fmt.money(r.reserved_usd, precise=True), str(r.calls),
                                        f"{r.cache_read_ratio:.0%}")))
        table = self.query_one("#spend-products", DataTable)
        table.clear()
        for name, cells in product_rows:
            table.add_row(*cells, key=name)
        daily = [sum(day) for day in zip(*per_day.values(), strict=True)] if per_day else [0.0] * DAYS
        self.query_one("#trend", Sparkline).data = daily
        self.query_one("#spend-summary", Static).update(
            f"total {fmt.money(total.settled_usd, precise=True)} · reserved {fmt.money(total.reserved_usd, precise=True)} "
            f"· {total.calls} calls · cache read {total.cache_read_ratio:.0%} · burn {fmt.money(burn)}/h over 15 min "
            f"· today projected {fmt.money(projected)}")

        btable = self.query_one("#spend-budgets", DataTable)
        btable.clear()
        for b in budgets:
            lasts = "not burning" if b.hours_left is None else f"{b.hours_left:.1f} h"
            btable.add_row(b.label, fmt.money(b.spent_usd, precise=True), fmt.money(b.reserved_usd, precise=True),
                           fmt.money(b.limit_usd), fmt.money(b.left_usd), fmt.money(b.burn_usd_per_hour), lasts)
        if not budgets:
            btable.add_row("no budget is set", "", "", "", "", "", "")
        self.loaded += 1

    def action_back(self) -> None:
        self.dismiss()
