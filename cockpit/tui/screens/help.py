"""`?`: every key of the screen you were on and of the whole cockpit, what it does, and what the lights mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ..pacing import PacedRepaint

LEGEND = """\
Gate lights, one per gate, for the task's latest commit:
  t tests   r review   d defects   $ budget     ● green: passed   ● red: failed   ○ not yet
A task lands only when every light is green, or when a human overrides (recorded with who and why).
Rows in the error colour, and the "Needs you" strip at the top, are tasks blocked for you: n walks them.
"""


def key_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(key, what, more) for the bindings active on `screen`, the screen's own first, then the app's."""
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for node in (screen, screen.app):
        for binding in node.BINDINGS:  # type: ignore[attr-defined]
            if not isinstance(binding, Binding) or not binding.description:
                continue
            key = screen.app.get_key_display(binding)
            if key in seen:
                continue
            seen.add(key)
            rows.append((key, binding.description, binding.tooltip or ""))
    return rows


class HelpScreen(PacedRepaint, ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=True, header_style="bold", expand=True, pad_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("does")
        table.add_column("", style="dim")
        for key, what, more in key_rows(self.under):
            table.add_row(key, what, more)
        with VerticalScroll(id="help") as box:
            box.border_title = f"Keys · {type(self.under).__name__.removesuffix('Screen') or 'Cockpit'}"
            box.border_subtitle = "esc close · ctrl+p finds products, tasks and agents by name"
            yield Static(table)
            yield Static(Text(LEGEND), id="legend")

    def action_close(self) -> None:
        self.dismiss()
