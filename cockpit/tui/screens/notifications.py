"""Notifications: every notice of the outbox (sent, pending, failed) with its state on each channel and its last
error; `r` retries the failed. With no channel configured, a pending notice says so instead of waiting forever.
Re-read every few seconds while shown, in a worker. Notice text is agent content: made visible, never markup
(cells are plain Text)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ...config import FactoryConfig
from ...domain.visible import visible_line
from ...factory.notify_sender import NO_CHANNEL, channel_states, outbox_rows, retry_failed, shown_state
from ...store import Store
from ..pacing import PacedRepaint
from ..widgets.footer import FittedFooter

REFRESH_S = 3.0
STATE_STYLE = {"sent": "green", "pending": "yellow", "failed": "bold red", "stale": "dim", NO_CHANNEL: "dim"}


class NotificationsScreen(PacedRepaint, Screen):
    CSS_PATH = Path(__file__).with_name("notifications.tcss")
    BINDINGS = [Binding("escape", "back", "Back", id="notify.back"),
                Binding("r", "retry", "Retry failed", id="notify.retry")]

    def __init__(self, store: Store, config: FactoryConfig) -> None:
        super().__init__()
        self.store, self.config = store, config
        self.loaded = 0  # refreshes done (tests wait for the first)

    def compose(self) -> ComposeResult:
        yield Static("", id="notify-summary")
        yield DataTable(id="notify-rows", cursor_type="row", zebra_stripes=True)
        yield FittedFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("state", "when", "what", "tries", "channels", "last error")
        self.load()
        self.set_interval(REFRESH_S, self.load)

    @work(exclusive=True, group="notifications")
    async def load(self) -> None:
        rows = await outbox_rows(self.store)
        table = self.query_one(DataTable)
        table.clear()
        counts = {s: 0 for s in STATE_STYLE}
        for r in rows:
            state = shown_state(r, self.config)
            counts[state] = counts.get(state, 0) + 1
            n = r["notice"]
            what = visible_line(f"{n.get('product') or ''} {n.get('task_id') or ''} {n.get('kind')}: {n.get('reason')}")
            table.add_row(Text(state, STATE_STYLE.get(state, "")),
                          Text(time.strftime("%m-%d %H:%M", time.localtime(r["created"]))),
                          Text(what.strip()[:100]), Text(str(r["attempts"])), Text(channel_states(r)[:80]),
                          Text(visible_line(r["error"] or "")[:80]), key=r["key"])
        waiting = (f"{counts[NO_CHANNEL]} not sent: no channel configured ([notify] in factory.toml)"
                   if counts[NO_CHANNEL] else f"{counts['pending']} pending")
        self.query_one("#notify-summary", Static).update(Text(
            f"{counts['sent']} sent · {waiting} · {counts['failed']} failed · {counts['stale']} stale"
            + ("   r: retry the failed" if counts["failed"] else "")))
        self.loaded += 1

    async def action_retry(self) -> None:
        n = await retry_failed(self.store)
        self.notify(f"{n} failed notice(s) queued again" if n else "No failed notices.")
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()
