"""Snapshots of the main, task and memory screens with hostile text from outside (issue 18): markup that would be
a button or a crash, escape sequences that would clear the screen or paint a fake green line. The picture shows
them as text: `[@click=app.quit]`, `␛[2J`, `␛[1;32m`. Update with `--snapshot-update` after looking at it."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from cockpit.domain import Event, Kind
from cockpit.store import Store
from cockpit.store.memory import Memory
from cockpit.tui import CockpitApp
from cockpit.tui.screens.memory import MemoryScreen
from cockpit.tui.screens.task import TaskScreen
from tui_kit import append, make_config, new_task, start, until

NOW = 1767261600.0  # 2026-01-01 10:00:00 UTC
TITLE = "[@click=app.quit]Quit[/] \x1b[2J\x1b[1;32mALL GATES PASSED\x1b[0m [/]"
SAID = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;owned\x07Done: [@click=screen.retry]retry[/]\r\x00\n"


@pytest.fixture(scope="module", autouse=True)
def utc():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


class FixedClockMemory(Memory):
    """Its events at a fixed time too (the activity log shows their time)."""

    async def _write(self, kind, actor, data, sql, *, product=None, task_id=None, new_lesson=False):
        return await self.store.append(Event(kind=kind, actor=actor, product=product, task_id=task_id, data=data,
                                             ts=NOW - 60), sql=sql,
                                       new_id=("lessons", "lesson_id") if new_lesson else None)


async def fill(root) -> None:
    config = make_config(root)
    store = await Store.open(config.store_path)
    try:
        t0 = NOW - 600
        t = await new_task(store, "shop", TITLE, ts=t0, body="[b]body[/b] \x1b[31m")
        await start(store, "shop", t, ts=t0 + 1)
        for i, (kind, actor, data) in enumerate([
            (Kind.AGENT_TEXT, "builder-1", {"text": SAID}),
            (Kind.COMMITTED, "builder-1", {"sha": "abc1234def"}),
            (Kind.SUBMITTED, "builder-1", {}),
            (Kind.AGENT_FINISHED, "builder-1", {"reason": "called submit"}),
            (Kind.VERDICT, "system", {"gate": "tests", "commit": "abc1234def", "outcome": "fail",
                                      "detail": "[/] 3 failed \x1b[1;32mPASSED\x1b[0m"}),
            (Kind.BLOCKED, "system", {"reasons": ["tests"], "detail": "[@click=app.quit]x[/] \x1b[2J"}),
        ]):
            await append(store, kind, actor, "shop", t, data, ts=t0 + 2 + i)
        memory = FixedClockMemory(store, clock=lambda: NOW)
        await memory.remember("[/] and [@click=screen.pin]pin me[/] \x1b[7m", product="shop", role="builder",
                              source_task=t, actor="builder-1")
    finally:
        await store.close()


@pytest.fixture(scope="module")
def factory_root(tmp_path_factory, utc):
    root = tmp_path_factory.mktemp("hostile")
    asyncio.run(fill(root))
    return root


class SnapshotApp(CockpitApp):
    def __init__(self, root) -> None:
        super().__init__(None, make_config(root), clock=lambda: NOW, cursor_blink=False)  # type: ignore[arg-type]

    async def on_load(self) -> None:
        self.store = await Store.open(self.config.store_path)

    async def on_unmount(self) -> None:
        await self.store.close()


async def wait(pilot, check) -> None:
    """Until the screen shows what the snapshot is of (tui_kit.until: fails loudly rather than snapshot too early)."""
    await until(pilot, check, timeout=60)
    await pilot.pause(0.2)


def test_main_screen_shows_hostile_text(snap_compare, factory_root):
    async def ready(pilot):
        await wait(pilot, lambda: pilot.app.main_screen.activity.line_count
                   and pilot.app.main_screen.panes["shop"].table.row_count)

    assert snap_compare(SnapshotApp(factory_root), terminal_size=(120, 30), run_before=ready)


def test_task_screen_shows_hostile_text(snap_compare, factory_root):
    async def ready(pilot):
        await wait(pilot, lambda: pilot.app.main_screen.panes["shop"].table.row_count)
        pilot.app.open_task("T1")
        await wait(pilot, lambda: isinstance(pilot.app.screen, TaskScreen) and pilot.app.screen.query("#verdicts")
                   and pilot.app.screen.query_one("#verdicts").row_count)

    assert snap_compare(SnapshotApp(factory_root), terminal_size=(120, 30), run_before=ready)


def test_memory_screen_shows_hostile_text(snap_compare, factory_root):
    async def ready(pilot):
        await wait(pilot, lambda: pilot.app.main_screen.panes["shop"].table.row_count)
        await pilot.press("m")
        await wait(pilot, lambda: isinstance(pilot.app.screen, MemoryScreen) and pilot.app.screen.loaded)

    assert snap_compare(SnapshotApp(factory_root), terminal_size=(120, 30), run_before=ready)
