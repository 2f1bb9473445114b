"""Inputs that follow the app's cursor-blink setting (off in snapshot tests, so screenshots are stable)."""

from __future__ import annotations

from textual.widgets import Input, TextArea


class CockpitInput(Input):
    def on_mount(self) -> None:
        self.cursor_blink = getattr(self.app, "cursor_blink", True)


class CockpitTextArea(TextArea):
    def on_mount(self) -> None:
        self.cursor_blink = getattr(self.app, "cursor_blink", True)
