"""The Cockpit app: the screens over the store, the orchestrator as a worker.

The app owns no state of its own: the store's projection is the truth, the
screens draw it, and every key goes through `cockpit.factory.commands`.

Run it inside the event loop that opened the store (the store's writer is a
task of that loop):

    store = await Store.open(config.store_path)
    try:
        await CockpitApp(store, config, orchestrator=orch).run_async()
    finally:
        await store.close()
"""

from __future__ import annotations

import fcntl
import gc
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from ..config import FactoryConfig
from ..domain.visible import visible, visible_line
from ..factory.agent_log import log_path, logs_dir
from ..store import Store
from .agents import AgentBoard
from .palette import CockpitCommands
from .screens.main import MainScreen

DARK, LIGHT = "cockpit-dark", "cockpit-light"
THEMES = [
    Theme(name=DARK, primary="#5FA8FF", secondary="#7CCFB4", accent="#FFB454", warning="#F2C14E", error="#F0616D",
          success="#6CCB82", foreground="#D8DEE9", background="#10151C", surface="#161D26", panel="#1F2935", dark=True),
    Theme(name=LIGHT, primary="#1F5FBF", secondary="#2E8B74", accent="#B5651D", warning="#9A6A00", error="#C0313D",
          success="#2E7D3A", foreground="#1B1F24", background="#F7F8FA", surface="#FFFFFF", panel="#E6E9EE", dark=False),
]


class Orchestrator(Protocol):
    async def run(self) -> Any: ...


class CockpitApp(App[None]):
    """`CockpitApp(store, config, orchestrator=...)`; the orchestrator may be None (tests, read-only)."""

    CSS_PATH = Path(__file__).with_name("cockpit.tcss")  # absolute: subclasses elsewhere (tests) find it too
    TITLE = "Cockpit"
    COMMANDS = App.COMMANDS | {CockpitCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help", key_display="?"),
        Binding("dollar_sign", "spend", "Spend", id="spend", key_display="$"),
        Binding("u", "rules", "Rules", id="rules"),
        Binding("m", "memory", "Memory", id="memory"),
        Binding("R", "rate", "Rate", id="rate", key_display="R"),
        # not in the Footer yet: a new entry there changes every screen's snapshot; palette and `?` list it
        Binding("N", "notifications", "Notices", id="notifications", key_display="N", show=False),
        Binding("T", "toggle_theme", "Theme", id="theme", key_display="T", show=False),
        Binding("ctrl+p", "command_palette", "Find", id="palette", show=False),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide"), (200, "-very-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-medium"), (40, "-tall")]

    def __init__(self, store: Store, config: FactoryConfig, *, orchestrator: Orchestrator | None = None,
                 clock: Callable[[], float] = time.time, cursor_blink: bool = True, theme: str = DARK) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.orchestrator = orchestrator
        self.clock = clock
        self.cursor_blink = cursor_blink
        self.board = AgentBoard()
        self.title = f"Cockpit — {config.factory.name}"
        for t in THEMES:
            self.register_theme(t)
        self.theme = theme
        self._lock_fd: int | None = None

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every toast is text: its message and title often carry a task's title, an agent's words or a
        refusal's reason, so they are never read as markup (`[@click=app.quit]` would be a button) and their
        control characters are shown (cockpit.domain.visible). `markup` is accepted and ignored."""
        super().notify(visible(message), title=visible_line(title), severity=severity, timeout=timeout,
                       markup=False)

    def get_default_screen(self) -> Screen:
        return MainScreen(self.store, self.config)

    @property
    def main_screen(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    FREEZE_HEAP_AFTER_S = 1.0
    """Once the first screen is up, the objects alive then (modules, widgets, the projection) are frozen."""

    def on_mount(self) -> None:
        self.store.set_budget_limits(self.config.budget_limits())  # whoever opened the store, keys meet the budgets
        self.set_timer(self.FREEZE_HEAP_AFTER_S, _freeze_heap)
        if self.orchestrator is None:
            return
        if not self._take_factory_lock():
            # A second cockpit on the same factory (another terminal, another browser tab of `cockpit serve`):
            # it shows everything and takes every key, but only the first one drives the agents.
            self.orchestrator = None
            self.sub_title = "watching: the factory runs in another cockpit"
            return
        # Not exit_on_error: a crashed orchestrator must not take the cockpit (and the
        # human's view of what happened) down with it; it is shown instead.
        self.run_worker(self.orchestrator.run(), name="orchestrator", exclusive=True, exit_on_error=False)

    def _take_factory_lock(self) -> bool:
        path = self.config.store_path.with_name(self.config.store_path.name + ".cockpit.lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return True  # cannot even create a lock file: do not stop the human from working
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd  # held until the process exits
        return True

    def on_unmount(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name != "orchestrator":
            return
        if event.state == WorkerState.ERROR:
            self.sub_title = "orchestrator stopped"
            self.notify(f"{type(worker.error).__name__}: {worker.error}", title="The orchestrator stopped",
                        severity="error", timeout=30)
        elif event.state == WorkerState.SUCCESS:
            self.sub_title = "orchestrator finished"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Spend", "Spend per product, sparklines, budgets", self.action_spend)
        yield SystemCommand("Rules", "The rules in force, reloads, broken files", self.action_rules)
        yield SystemCommand("Memory", "Search, edit, pin or delete lessons", self.action_memory)
        yield SystemCommand("Notifications", "Notices sent, pending and failed; retry the failed",
                            self.action_notifications)
        yield SystemCommand("Toggle light/dark", "Switch between the cockpit's light and dark themes",
                            self.action_toggle_theme)
        if isinstance(screen, MainScreen):
            yield from screen.system_commands()

    # --- going places -------------------------------------------------------------------------

    def _back_to_main(self) -> MainScreen:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, MainScreen):
            self.pop_screen()
        return self.main_screen

    def open_task(self, task_id: str) -> None:
        from .screens.task import TaskScreen

        if self.store.task(task_id) is None:
            self.notify(f"No task {task_id}.", severity="warning")
            return
        self.push_screen(TaskScreen(self.store, self.config, task_id))

    def open_agent_log(self, agent: str) -> None:
        from .screens.agent_log import AgentLogScreen

        path = log_path(logs_dir(self.config), agent)
        try:
            label = str(path.relative_to(self.config.root))
        except ValueError:
            label = str(path)
        self.push_screen(AgentLogScreen(agent, path, label=label))

    def focus_product(self, product: str) -> None:
        self._back_to_main().focus_product(product)

    def _push_unique(self, screen_type: type[Screen], *args: Any) -> None:
        if isinstance(self.screen, screen_type):
            return
        self.push_screen(screen_type(*args))

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_spend(self) -> None:
        from .screens.spend import SpendScreen

        self._push_unique(SpendScreen, self.store, self.config)

    def action_rules(self) -> None:
        from .screens.rules import RulesScreen

        self._push_unique(RulesScreen, self.store, self.config)

    def action_memory(self) -> None:
        from .screens.memory import MemoryScreen

        self._push_unique(MemoryScreen, self.store, self.config)

    def action_notifications(self) -> None:
        from .screens.notifications import NotificationsScreen

        self._push_unique(NotificationsScreen, self.store, self.config)

    def action_rate(self) -> None:
        from .screens.rate import RateScreen

        self._push_unique(RateScreen, self.store, self.config)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK


def _freeze_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight (`gc.freeze`).

    A full collection walks every tracked object: with Textual, pydantic and the SDK loaded that took
    45-145 ms on the 2-core bench box, a freeze of the screen at random moments (the p99 of key → repaint
    under 20 streaming agents was 59-64 ms; frozen, ~43 ms: `make bench`, ui_load). One collection first,
    so no garbage is frozen with the rest."""
    gc.collect()
    gc.freeze()
