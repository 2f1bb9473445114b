"""A modal that asks for one line of text: the note of an override, the instruction of a send-back, an amount.

Enter submits, Escape cancels (the result is None); an empty (or, with `check`,
an invalid) answer is refused on the spot, the modal stays open and says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Function
from textual.widgets import Input, Label, Static

from ...domain.visible import visible
from ..pacing import PacedRepaint
from ..widgets.inputs import CockpitInput


class PromptScreen(PacedRepaint, ModalScreen[str | None]):
    """Dismisses with the stripped text, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, *, context: str = "", placeholder: str = "",
                 required: str = "An answer is required.", value: str = "",
                 check: Callable[[str], str | None] | None = None) -> None:
        """`check(answer)` returns why the answer is refused, or None to accept it."""
        super().__init__()
        self.prompt_title = title
        self.context = context
        self.placeholder = placeholder
        self.required = required
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self.prompt_title
            dialog.border_subtitle = "enter submit · esc cancel"
            if self.context:
                yield Static(visible(self.context), id="context", markup=False)
            yield CockpitInput(
                value=self.value,
                placeholder=self.placeholder,
                validators=[Function(lambda s: bool(s.strip()), self.required)],
                validate_on=["submitted"],
                id="answer",
            )
            yield Label("", id="error")

    @on(Input.Submitted, "#answer")
    def submit(self, event: Input.Submitted) -> None:
        event.stop()
        result = event.validation_result
        if result is not None and not result.is_valid:
            self.query_one("#error", Label).update(result.failure_descriptions[0])
            return
        why = self.check(event.value.strip()) if self.check is not None else None
        if why:
            self.query_one("#error", Label).update(why)
            return
        self.dismiss(event.value.strip())

    @on(Input.Changed, "#answer")
    def clear_error(self) -> None:
        self.query_one("#error", Label).update("")

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(PacedRepaint, ModalScreen[bool]):
    """Yes or no, and no is the default: only `y` confirms; `n`, escape and enter cancel.

    `settle_s`: a `y` that arrives sooner than this after the question appeared was typed before
    anyone could read it (a word typed into the wrong place: "daily" is d, a, i, l, y) and is ignored.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape,enter", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, context: str = "", *, settle_s: float = 0.0) -> None:
        super().__init__()
        self.prompt_title = title
        self.context = context
        self.settle_s = settle_s
        self.shown_at = time.monotonic()

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self.prompt_title
            dialog.border_subtitle = "y yes · n/enter no"
            yield Static(visible(self.context or self.prompt_title), id="context", markup=False)

    def on_mount(self) -> None:
        self.shown_at = time.monotonic()

    def action_answer(self, yes: bool) -> None:
        if yes and time.monotonic() - self.shown_at < self.settle_s:
            return  # typed ahead, not read: wait for a deliberate y
        self.dismiss(yes)
