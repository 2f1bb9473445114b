"""The top line: the factory, how many items need the human, what it spends and how fast.

`Cockpit — demo │ ⚠ 2 need you │ $1.20/$50.00 today │ $3.40 total │ burn $0.80/h │ 4 at work`

When a notice could not be delivered (a channel failing), `✉ notices failing` says where to look.

Offline (the scripted model answers), `OFFLINE` follows the title, and the scripted model's spend
shows apart as `sim $0.40 today` (never added to the real figures).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

from ...domain import format as fmt


@dataclass(frozen=True)
class Figures:
    needs_you: int = 0
    today_usd: float = 0.0
    day_limit_usd: float | None = None
    total_usd: float = 0.0
    factory_limit_usd: float | None = None
    burn_usd_per_hour: float = 0.0
    working: int = 0
    note: str = ""  # e.g. "orchestrator stopped"
    offline: str = ""  # why the scripted model answers (e.g. "no ANTHROPIC_API_KEY"); empty: online
    sim_today_usd: float = 0.0
    sim_total_usd: float = 0.0
    notify_failing: bool = False  # the last delivery of a notice failed: you may not be reached


class StatusBar(Static):
    """One line; `show(Figures)` redraws only when a figure changed."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.title_text = title
        self.figures = Figures()

    def on_mount(self) -> None:
        self._draw()

    def show(self, figures: Figures) -> None:
        if figures != self.figures:
            self.figures = figures
            self._draw()

    def _draw(self) -> None:
        f = self.figures
        parts: list[str | tuple[str, str]] = [(self.title_text, "bold")]
        if f.offline:
            parts.append((" OFFLINE ", "bold $text on $warning"))
        if f.needs_you:
            parts.append((f" ⚠ {f.needs_you} need{'s' if f.needs_you == 1 else ''} you ", "bold $text on $error"))
        else:
            parts.append(("nothing needs you", "$text-muted"))
        today = fmt.money(f.today_usd)
        if f.day_limit_usd is not None:
            today += f"/{fmt.money(f.day_limit_usd)}"
        parts.append(f"{today} today")
        total = fmt.money(f.total_usd)
        if f.factory_limit_usd is not None:
            total += f"/{fmt.money(f.factory_limit_usd)}"
        parts.append(f"{total} total")
        if f.sim_total_usd:
            parts.append((f"sim {fmt.money(f.sim_today_usd)} today", "$text-muted"))
        parts.append(f"burn {fmt.money(f.burn_usd_per_hour)}/h")
        parts.append(f"{f.working} at work")
        if f.note:
            parts.append((f.note, "$text-warning"))
        if f.notify_failing:
            parts.append((" ✉ notices failing: cockpit notify list ", "bold $text on $warning"))
        pieces: list[str | tuple[str, str]] = []
        for i, p in enumerate(parts):
            if i:
                pieces.append((" │ ", "$text-muted"))
            pieces.append(p)
        self.update(Content.assemble(*pieces), layout=False)  # one line, always
