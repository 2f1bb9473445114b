"""The "Needs you" strip: the blocked tasks, at the top, in the error colour.

Everything in it waits for the human; when nothing does, it shrinks to one
quiet line and takes no focus.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ...domain.tasks import Task
from ...domain.visible import visible_line
from ...domain import format as fmt


class NeedsYou(OptionList):
    """An option per blocked task (option id = task id), in the store's order."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.task_ids: list[str] = []

    def on_mount(self) -> None:
        self.show([])

    @property
    def selected_task_id(self) -> str | None:
        if self.highlighted is None or not self.task_ids:
            return None
        return self.get_option_at_index(self.highlighted).id

    def select_task(self, task_id: str) -> bool:
        if task_id not in self.task_ids:
            return False
        self.highlighted = self.task_ids.index(task_id)
        return True

    def show(self, blocked: list[Task]) -> None:
        ids = [t.id for t in blocked]
        keep, at = self.selected_task_id, self.highlighted or 0
        self.task_ids = ids
        self.clear_options()
        if blocked:
            self.add_options(
                Option(
                    Text.assemble((visible_line(t.id), "bold"), f" {visible_line(t.product)} · "
                                  f"{visible_line(fmt.truncate(t.title, 48))} — ",
                                  (visible_line(fmt.block_summary(t.blocked_by, t.block_detail, 120)), "italic")),
                    id=t.id,
                )
                for t in blocked
            )
            # the same task if it still waits, else the one that took its place
            self.highlighted = ids.index(keep) if keep in ids else min(at, len(ids) - 1)
        else:
            self.add_option(Option("Nothing needs you: the factory is running.", disabled=True))
        self.border_title = f"Needs you ({len(ids)})" if ids else "Needs you"
        self.set_class(bool(ids), "-attention")
        self.disabled = not ids
