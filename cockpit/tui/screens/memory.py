"""The memory: the lessons agents learned; search them, edit, pin, delete or restore one, accept or reject
what an agent proposed (superseding a pinned or human-written lesson, which only a human may do).

Everything goes through `cockpit.store.memory.Memory`, which records each change
as an event with who did it; a deleted lesson comes back only when a human
restores it (the store says so, not this screen).

Typing lands in the search box: it has the focus when the screen opens, so a word
typed at once searches instead of running the table's keys; a delete asks first,
and only a deliberate `y` (not enter, not a `y` typed within a word) confirms it.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from ...config import FactoryConfig
from ...domain.errors import Refused
from ...domain.visible import visible, visible_line
from ...store import Store, StoreError
from ...store.memory import Lesson, Memory, Proposal
from ...domain import format as fmt
from ..pacing import PacedRepaint
from ..widgets.inputs import CockpitInput
from ..widgets.text_table import TextTable
from .prompt import ConfirmScreen, PromptScreen


class MemoryScreen(PacedRepaint, Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="memory.back"),
        Binding("slash", "search", "Search", id="memory.search", key_display="/"),
        Binding("e", "edit", "Edit", id="memory.edit"),
        Binding("p", "pin", "Pin/unpin", id="memory.pin"),
        Binding("d", "delete", "Delete", id="memory.delete"),
        Binding("a", "decide(True)", "Accept proposal", id="memory.accept"),
        Binding("x", "decide(False)", "Reject proposal", id="memory.reject"),
        Binding("r", "restore", "Restore", id="memory.restore",
                tooltip="Undo a delete: the selected deleted lesson, else the one deleted last here"),
        Binding("D", "toggle_deleted", "Deleted on/off", id="memory.deleted", key_display="D"),
    ]

    CONFIRM_SETTLE_S = 0.4  # a `y` sooner than this after the question was typed ahead, not read

    def __init__(self, store: Store, config: FactoryConfig) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.memory = Memory(store, fade_days=config.memory.fade_days)
        self.lessons: list[Lesson] = []
        self.proposals: list[Proposal] = []
        self.query_text = ""
        self.loaded = 0
        self.show_deleted = False
        self.last_deleted: int | None = None

    @property
    def human(self) -> str:
        return self.config.factory.human

    def compose(self) -> ComposeResult:
        yield CockpitInput(placeholder="search lessons: words, then enter (empty: all)", id="memory-search")
        yield TextTable(id="lessons", cursor_type="row", zebra_stripes=True)
        yield Static("", id="lesson-detail", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#lessons", DataTable)
        for col in ("id", "pin", "scope", "role", "lesson", "source", "used"):
            table.add_column(col, key=col)
        self.query_one("#memory-search", Input).focus()  # what a person types first is a search
        self.load()

    @work(exclusive=True, group="memory")
    async def load(self) -> None:
        if self.query_text:
            self.lessons = await self.memory.search(self.query_text, limit=200)
        else:
            self.lessons = await self.memory.lessons()
        self.proposals = await self.memory.proposals()
        proposed = {p.lesson_id for p in self.proposals}
        if self.show_deleted:
            words = self.query_text.lower().split()
            self.lessons += [lesson for lesson in await self.memory.lessons(include_deleted=True)
                             if lesson.deleted and all(w in lesson.text.lower() for w in words)]
        table = self.query_one("#lessons", DataTable)
        keep = table.cursor_row
        table.clear()
        for lesson in self.lessons:
            mark = ("deleted" if lesson.deleted else "📌" if lesson.pinned else "") + \
                ("?" if lesson.id in proposed else "")
            table.add_row(f"L{lesson.id}", mark, lesson.product or "global", lesson.role or "all",
                          fmt.one_line(lesson.text, 70), lesson.source, str(lesson.use_count), key=str(lesson.id))
        if self.lessons:
            table.move_cursor(row=min(keep, len(self.lessons) - 1))
        what = f"matching {escape(visible_line(repr(self.query_text)))}" if self.query_text else "in memory"
        what += ", deleted ones included (D hides them)" if self.show_deleted else ""
        table.border_title = f"{len(self.lessons)} lesson{'s' if len(self.lessons) != 1 else ''} {what}" + (
            f" · {len(self.proposals)} proposal{'s' if len(self.proposals) != 1 else ''} waiting (a accept, x reject)"
            if self.proposals else "")
        self._detail()
        self.loaded += 1

    @property
    def selected(self) -> Lesson | None:
        table = self.query_one("#lessons", DataTable)
        if not self.lessons or not table.is_valid_row_index(table.cursor_row):
            return None
        key = table.ordered_rows[table.cursor_row].key.value
        return next((lesson for lesson in self.lessons if str(lesson.id) == key), None)

    @on(DataTable.RowHighlighted, "#lessons")
    def _detail(self) -> None:
        lesson = self.selected
        detail = self.query_one("#lesson-detail", Static)
        if lesson is None:
            detail.update("No lesson yet: agents record them when a task needed a second round or a human."
                          if not self.query_text else "Nothing matches.")
            return
        tags = f" · tags {' '.join(lesson.tags)}" if lesson.tags else ""
        roles = f"for {', '.join(lesson.roles)}" if lesson.roles else "for every role"
        text = (f"L{lesson.id} · {lesson.product or 'global'} · {roles} · source {lesson.source}{tags} · used "
                f"{lesson.use_count}×{' · pinned' if lesson.pinned else ''}"
                f"{' · DELETED: r restores it' if lesson.deleted else ''}\n{lesson.text}")
        proposal = self._proposal_of(lesson)
        if proposal is not None:
            other = next((x for x in self.lessons if x.id == proposal.superseded_by), None)
            text += (f"\n\nPROPOSED by {proposal.actor}" + (f" on {proposal.task_id}" if proposal.task_id else "")
                     + f": L{proposal.superseded_by} supersedes L{proposal.lesson_id} (a accept · x reject)"
                     + (f"\nL{other.id}: {other.text}" if other is not None and other.id != lesson.id else ""))
        detail.update(visible(text))

    def _proposal_of(self, lesson: Lesson) -> Proposal | None:
        """The open proposal about this lesson: to supersede it, or to supersede another with it."""
        return next((p for p in self.proposals if lesson.id in (p.lesson_id, p.superseded_by)), None)

    async def action_decide(self, accept: bool) -> None:
        lesson = self.selected
        proposal = self._proposal_of(lesson) if lesson is not None else None
        if proposal is None:
            self.notify("No proposal about this lesson.", severity="warning")
            return
        what = "Accept" if accept else "Reject"
        await self._do(f"{what} L{proposal.superseded_by} superseding L{proposal.lesson_id}",
                       self.memory.decide(proposal.id, actor=self.human, accept=accept))

    def action_search(self) -> None:
        self.query_one("#memory-search", Input).focus()

    @on(Input.Submitted, "#memory-search")
    def _search(self, event: Input.Submitted) -> None:
        self.query_text = event.value.strip()
        self.query_one("#lessons", DataTable).focus()
        self.load()

    async def _do(self, what: str, action) -> None:
        try:
            await action
        except (Refused, StoreError) as e:
            self.notify(str(getattr(e, "reason", e)), title=f"{what} refused", severity="error", timeout=8)
        else:
            self.notify(f"{what} recorded.", title=what)
        self.load()

    def action_edit(self) -> None:
        lesson = self.selected
        if lesson is None:
            return

        async def done(text: str | None) -> None:
            if text and text != lesson.text:
                await self._do(f"Edit L{lesson.id}", self.memory.edit(lesson.id, actor=self.human, text=text))

        self.app.push_screen(PromptScreen(f"Edit L{lesson.id}", context=f"source: {lesson.source}", value=lesson.text,
                                          required="A lesson needs text (delete it with d instead)."), done)

    async def action_pin(self) -> None:
        lesson = self.selected
        if lesson is not None:
            what = "Unpin" if lesson.pinned else "Pin"
            await self._do(f"{what} L{lesson.id}", self.memory.pin(lesson.id, actor=self.human, pinned=not lesson.pinned))

    def action_delete(self) -> None:
        lesson = self.selected
        if lesson is None or lesson.deleted:
            return

        async def done(yes: bool | None) -> None:
            if yes:
                self.last_deleted = lesson.id
                await self._do(f"Delete L{lesson.id}", self.memory.delete(lesson.id, actor=self.human))

        self.app.push_screen(ConfirmScreen(f"Delete L{lesson.id}?", f"{lesson.text}\n\nA deleted lesson is no longer "
                                                                    "recalled nor learned again; r undoes it.",
                                           settle_s=self.CONFIRM_SETTLE_S), done)

    async def action_restore(self) -> None:
        lesson = self.selected
        lesson_id = lesson.id if lesson is not None and lesson.deleted else self.last_deleted
        if lesson_id is None:
            self.notify("Select a deleted lesson first (D shows them).", title="Restore", severity="warning")
            return
        if lesson_id == self.last_deleted:
            self.last_deleted = None
        await self._do(f"Restore L{lesson_id}", self.memory.restore(lesson_id, actor=self.human))

    def action_toggle_deleted(self) -> None:
        self.show_deleted = not self.show_deleted
        self.load()

    def action_back(self) -> None:
        self.dismiss()
