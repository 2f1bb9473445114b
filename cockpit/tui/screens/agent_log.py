"""One agent's log, full screen: follow it, find in it, jump to its top or end.

The log is the file the factory writes for the agent (`memory/logs/AGENT.log`,
cockpit.factory.agent_log); `cockpit tail AGENT --follow` reads the same file.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Static

from ...domain.visible import visible_line
from ..pacing import PacedRepaint
from ..widgets.inputs import CockpitInput
from ..widgets.log_view import LogView
from ..widgets.footer import FittedFooter


class AgentLogScreen(PacedRepaint, Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="log.back"),
        Binding("f", "toggle_follow", "Follow", id="log.follow", tooltip="Follow the end of the log (on/off)"),
        Binding("slash", "search", "Find", id="log.search", key_display="/"),
        Binding("n", "next_match", "Next", id="log.next"),
        Binding("N", "previous_match", "Previous", id="log.previous", key_display="N"),
        Binding("g", "top", "Top", id="log.top"),
        Binding("G", "end", "End", id="log.end", key_display="G"),
    ]

    def __init__(self, agent: str, path: Path, *, follow: bool = True, label: str | None = None) -> None:
        super().__init__()
        self.agent = agent
        self.path = Path(path)
        self.follow = follow
        self.label = label or str(path)

    def compose(self) -> ComposeResult:
        yield Static("", id="log-status", markup=False)
        yield LogView(self.path, follow=self.follow, id="log-view")
        yield CockpitInput(placeholder="Find (enter: go · esc: close)", id="log-search")
        yield FittedFooter(compact=True)

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.query_one("#log-search").display = False
        self.view.focus()
        self._status()

    @on(LogView.Changed)
    def _status(self) -> None:
        view = self.view
        if view.missing:
            state = "no log yet: it is written while the factory runs this agent"
        elif not view.indexed:
            state = f"~{view.line_count:,} lines (indexing…)" if view.line_count else "reading…"
        else:
            state = f"{view.line_count:,} lines"
        parts = [self.agent, state, "following" if view.follow else "paused"]
        if view.search_term:
            where = f"line {view.current_match + 1:,}" if view.current_match is not None else "not found yet"
            parts.append(f"find {view.search_term!r}: {where}")
        parts.append(self.label)
        self.query_one("#log-status", Static).update(visible_line(" · ".join(parts)))

    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.display:
            search.display = False
            self.view.focus()
            return
        self.dismiss()

    def action_toggle_follow(self) -> None:
        self.view.follow = not self.view.follow

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.display = True
        search.focus()

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.display = False
        self.view.focus()
        self.view.set_search(event.value.strip())
        if event.value.strip():
            self.view.find()
        self._status()

    def action_next_match(self) -> None:
        if not self.view.search_term:
            self.action_search()
            return
        self.view.find()

    def action_previous_match(self) -> None:
        if not self.view.search_term:
            self.action_search()
            return
        self.view.find(backwards=True)

    def action_top(self) -> None:
        self.view.action_top()

    def action_end(self) -> None:
        self.view.action_end()
