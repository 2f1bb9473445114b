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
        """Bring the options in line with `blocked`, touching only what changed: rebuilding the list empties it
        for a moment, and its scrollbar's coming and going costs a layout of the whole screen (under a burst of
        blocks that was most of the main screen's time)."""
        ids = [t.id for t in blocked]
        keep, at = self.selected_task_id, self.highlighted or 0
        prompts = [_prompt(t) for t in blocked]
        if ids != self.task_ids or not blocked or not self.option_count:
            self.task_ids = ids
            if blocked:
                self.set_options(Option(prompt, id=task_id) for task_id, prompt in zip(ids, prompts, strict=True))
                # the same task if it still waits, else the one that took its place
                self.highlighted = ids.index(keep) if keep in ids else min(at, len(ids) - 1)
            elif self.option_count != 1 or not self.get_option_at_index(0).disabled:
                self.set_options([Option("Nothing needs you: the factory is running.", disabled=True)])
        else:
            for index, prompt in enumerate(prompts):
                if self.get_option_at_index(index).prompt != prompt:
                    self.replace_option_prompt_at_index(index, prompt)
        self.border_title = f"Needs you ({len(ids)})" if ids else "Needs you"
        self.set_class(bool(ids), "-attention")
        self.disabled = not ids


def _prompt(t: Task) -> Text:
    return Text.assemble((visible_line(t.id), "bold"), f" {visible_line(t.product)} · "
                         f"{visible_line(fmt.truncate(t.title, 48))} — ",
                         (visible_line(fmt.block_summary(t.blocked_by, t.block_detail, 120)), "italic"))
