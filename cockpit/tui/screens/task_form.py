"""Add work, or change it: product, title, body, priority.

The form checks only what it must to send something (a title, a whole-number
priority); whether the task may be added or changed is the domain's call.
`ctrl+s` saves from anywhere in the form, `escape` cancels.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select

from ...config import FactoryConfig
from ...domain.tasks import Task
from ..pacing import PacedRepaint
from ..widgets.inputs import CockpitInput, CockpitTextArea


class TaskForm(PacedRepaint, ModalScreen[dict | None]):
    """Dismisses with {product, title, body, priority}, or None when cancelled."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="form.save", priority=True),
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
    ]

    def __init__(self, config: FactoryConfig, *, task: Task | None = None, product: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.editing = task
        names = [p.name for p in config.products]
        self.product = task.product if task else (product if product in names else (names[0] if names else None))

    def compose(self) -> ComposeResult:
        editing = self.editing is not None
        with Vertical(id="form") as form:
            form.border_title = f"Edit {self.editing.id}" if self.editing else "New task"
            form.border_subtitle = "ctrl+s save · esc cancel"
            if editing:
                yield Label(f"product: {self.product}", id="product-label")
            else:
                yield Label("Product")
                yield Select([(p.name, p.name) for p in self.config.products], value=self.product or Select.BLANK,
                             allow_blank=False, id="product", compact=True)
            yield Label("Title")
            yield CockpitInput(value=self.editing.title if self.editing else "", placeholder="What should be done, in a line",
                               id="title", compact=True)
            yield Label("Body")
            yield CockpitTextArea(self.editing.body if self.editing else "", id="body", soft_wrap=True, show_line_numbers=False,
                                  compact=True)
            with Horizontal(id="form-row"):
                yield Label("Priority (higher first)")
                priority = str(self.editing.priority if self.editing else 0)
                yield CockpitInput(value=priority, id="priority", type="integer", compact=True)
            yield Label("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Save", variant="primary", id="save", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#title", CockpitInput).focus()

    @on(CockpitInput.Submitted, "#title")
    def _next(self) -> None:
        self.query_one("#body", CockpitTextArea).focus()

    @on(CockpitInput.Submitted, "#priority")
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        title = self.query_one("#title", CockpitInput).value.strip()
        body = self.query_one("#body", CockpitTextArea).text
        raw = self.query_one("#priority", CockpitInput).value.strip() or "0"
        error = self.query_one("#error", Label)
        if not title:
            error.update("A task needs a title.")
            self.query_one("#title", CockpitInput).focus()
            return
        try:
            priority = int(raw)
        except ValueError:
            error.update(f"Priority is a whole number, not {raw!r}.")
            return
        product = self.product
        if self.editing is None:
            value = self.query_one("#product", Select).value
            product = value if isinstance(value, str) else product
        if not product:
            error.update("Add a product to factory.toml first (cockpit product add PATH).")
            return
        self.dismiss({"product": product, "title": title, "body": body, "priority": priority})

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
