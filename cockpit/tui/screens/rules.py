"""The rules in force: their content hash, the files, the last reload and the broken files.

With a factory running in this process the screen reads its live rule book (the
one the agents' prompts come from); otherwise it reads the rules the same way
in a thread. Reloads and errors are the `rules.changed` / `rules.error` events.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Log, Static

from ...config import FactoryConfig
from ...domain.events import Kind
from ...domain.visible import visible_line
from ...factory.rules import RuleBook, RuleError, RuleFile
from ...store import Store
from ...domain import format as fmt
from .. import queries
from ..pacing import PacedRepaint
from ..widgets.text_table import TextTable
from ..widgets.footer import FittedFooter

REFRESH_S = 2.0


@dataclass
class InForce:
    hash: str
    files: list[RuleFile]
    errors: list[RuleError]


def read_rules(config: FactoryConfig, book: RuleBook | None = None) -> InForce:
    """What is in force: from the running factory's book, or read now (blocking: run it in a thread)."""
    if book is None:
        products = {p.name: (config.product_path(p.name), p.main_branch) for p in config.products}
        book = RuleBook(config.rules_path, products=products)
        book.refresh()
        for name in products:
            try:
                book.refresh_product_sync(name)
            except Exception:  # an unreadable product's rules are reported by `cockpit doctor`
                continue
    files = sorted(book.files(), key=lambda f: f.sort_key)
    return InForce(book.hash, files, book.errors())


class RulesScreen(PacedRepaint, Screen):
    BINDINGS = [Binding("escape", "back", "Back", id="rules.back")]

    def __init__(self, store: Store, config: FactoryConfig) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.loaded = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="rules-summary")
        with Vertical(id="rules-body"):
            yield TextTable(id="rules-files", cursor_type="row", zebra_stripes=True)
            yield TextTable(id="rules-errors", cursor_type="row")
            yield Log(id="rules-events", max_lines=500)
        yield FittedFooter(compact=True)

    def on_mount(self) -> None:
        files = self.query_one("#rules-files", DataTable)
        for col in ("file", "title", "roles", "products", "order"):
            files.add_column(col, key=col)
        files.border_title = "Files in force"
        errors = self.query_one("#rules-errors", DataTable)
        for col in ("file", "line", "problem"):
            errors.add_column(col, key=col)
        errors.border_title = "Broken files (the last good version stays in force)"
        self.query_one("#rules-events", Log).border_title = "Reloads and errors"
        self.load()
        self.set_interval(REFRESH_S, self.load)

    @work(exclusive=True, group="rules")
    async def load(self) -> None:
        orchestrator = getattr(self.app, "orchestrator", None)
        knowledge = getattr(orchestrator, "knowledge", None)
        book = getattr(knowledge, "rules", None)
        state = read_rules(self.config, book) if book is not None else await asyncio.to_thread(read_rules, self.config)
        events = await queries.rules_events(self.store)
        changes = [e for e in events if e.kind == Kind.RULES_CHANGED]
        last = changes[-1] if changes else None
        reload = (f"last reload {fmt.clock(last.ts)} ({fmt.short_sha(last.data.get('old_hash'))} → "
                  f"{fmt.short_sha(last.data.get('new_hash'))})" if last else "no reload since the factory started")
        source = "the running factory" if book is not None else str(self.config.rules_path)
        self.query_one("#rules-summary", Static).update(
            f"rules in force: hash {state.hash} · {len(state.files)} files · {reload} · "
            f"{len(state.errors)} broken · from {source}")
        files = self.query_one("#rules-files", DataTable)
        files.clear()
        for f in state.files:
            # cells as Text: a DataTable reads a str as markup, and rule text is full of [brackets]
            files.add_row(*map(Text, (f.name, fmt.truncate(f.title, 40), ", ".join(f.roles) if f.roles else "all",
                                      ", ".join(f.products) if f.products else (f.product or "all"), str(f.order))),
                          key=f.name)
        errors = self.query_one("#rules-errors", DataTable)
        errors.clear()
        for e in state.errors:
            errors.add_row(Text(e.file), Text(str(e.line)), Text(e.message))
        errors.display = bool(state.errors)
        log = self.query_one("#rules-events", Log)
        log.clear()
        log.write_lines([visible_line(line) for e in events if (line := fmt.event_line(e)) is not None] or
                        ["no reload or error recorded yet"])
        self.loaded += 1

    def action_back(self) -> None:
        self.dismiss()
