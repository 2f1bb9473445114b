"""A stray word must not delete a lesson, and a deleted lesson can be restored (issue 20, point 2).

Real parts: a store on a SQLite file, the memory module, the cockpit driven by Textual's pilot,
`cockpit memory ...` through the real command line on a factory written by `cockpit init`.
"""

from __future__ import annotations

import sqlite3

import pytest

from cockpit.cli import main as cli
from cockpit.config import load_factory
from cockpit.domain.errors import Refused
from cockpit.store import Store
from cockpit.store.memory import Memory
from cockpit.tui import CockpitApp
from cockpit.tui.screens.memory import MemoryScreen
from cockpit.tui.screens.prompt import ConfirmScreen
from tui_kit import HUMAN, screen_text, type_text, until

SIZE = (120, 36)


async def two_lessons(store: Store) -> tuple[Memory, int, int]:
    memory = Memory(store)
    a = await memory.remember("Use Decimal for money, never float.", product="shop", role="builder",
                              source_task="T9", actor="builder-1")
    b = await memory.remember("Quote CSV fields that hold commas.", product="shop", role="builder",
                              source_task="T8", actor="builder-1")
    return memory, a.lesson_id, b.lesson_id


async def open_memory(pilot, app) -> MemoryScreen:
    await pilot.press("m")
    await until(pilot, lambda: isinstance(app.screen, MemoryScreen))
    screen = app.screen
    await until(pilot, lambda: screen.loaded > 0 and len(screen.lessons) == 2)
    return screen


async def test_a_word_typed_on_the_memory_screen_searches_and_deletes_nothing(store, config):
    """m, then `decimal` and enter at once (no `/`): the search box has the focus, so it searches."""
    memory, a, _ = await two_lessons(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_memory(pilot, app)
        await type_text(pilot, "decimal")
        await pilot.press("enter")
        # the keys did reach the screen: the word was searched for
        await until(pilot, lambda: screen.query_text == "decimal" and [x.id for x in screen.lessons] == [a])
        assert not isinstance(app.screen, ConfirmScreen)
        # now the table has the focus; the same word typed there opens the delete question at `d`, and the
        # enter after it means no
        await type_text(pilot, "decimal")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MemoryScreen))
    assert await store.events(kinds=["memory.deleted"]) == []
    assert [lesson.id for lesson in await memory.lessons()] == sorted([a, _])


async def test_a_y_typed_ahead_does_not_confirm(store, config):
    """The settle guard, without timing races: a `y` sooner than `settle_s` is ignored, a later one confirms."""
    answers: list[bool] = []
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(ConfirmScreen("Delete L1?", settle_s=3600), answers.append)
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and answers == []
        app.screen.settle_s = 0  # the question has been read
        await pilot.press("y")
        await until(pilot, lambda: answers == [True])


async def test_without_the_settle_guard_a_typed_word_would_delete(store, config, monkeypatch):
    """Liveness of the attack: with no settle time, the `y` of "daily" typed on the table deletes L1."""
    memory, a, _ = await two_lessons(store)
    monkeypatch.setattr(MemoryScreen, "CONFIRM_SETTLE_S", 0.0)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_memory(pilot, app)
        await type_text(pilot, "decimal")
        await pilot.press("enter")
        await until(pilot, lambda: [x.id for x in screen.lessons] == [a])
        await type_text(pilot, "daily")
        await until(pilot, lambda: screen.loaded and not screen.lessons)
    assert [e.data["lesson_id"] for e in await store.events(kinds=["memory.deleted"])] == [a]


async def test_enter_on_a_delete_question_means_no(store, config):
    """d then enter: the question's default is no."""
    memory, a, b = await two_lessons(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_memory(pilot, app)
        screen.query_one("#lessons").focus()
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "n/enter no" in screen_text(app)
        await pilot.pause(MemoryScreen.CONFIRM_SETTLE_S)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MemoryScreen))
    assert await store.events(kinds=["memory.deleted"]) == []


async def test_a_deleted_lesson_is_restored_in_the_screen(store, config):
    """d, a deliberate y: deleted; r undoes it. D shows deleted lessons; r restores the selected one."""
    memory, a, b = await two_lessons(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_memory(pilot, app)
        table = screen.query_one("#lessons")
        table.focus()
        deleted = screen.selected.id
        await pilot.press("d")
        await pilot.pause(MemoryScreen.CONFIRM_SETTLE_S)
        await pilot.press("y")
        await until(pilot, lambda: [x.id for x in screen.lessons] == [x for x in (a, b) if x != deleted])
        assert (await memory.get(deleted)).deleted
        await pilot.press("r")  # undo straight away
        await until(pilot, lambda: sorted(x.id for x in screen.lessons) == sorted([a, b]))
        assert not (await memory.get(deleted)).deleted
        # once more, then find it among the deleted ones and restore it from there
        await pilot.press("d")
        await pilot.pause(MemoryScreen.CONFIRM_SETTLE_S)
        await pilot.press("y")
        await until(pilot, lambda: len(screen.lessons) == 1)
        screen.last_deleted = None  # another visit: only the list tells which lesson was deleted
        await pilot.press("D")
        await until(pilot, lambda: len(screen.lessons) == 2 and screen.lessons[-1].deleted)
        assert "deleted" in screen_text(app)
        table.move_cursor(row=1)
        await pilot.pause()
        assert screen.selected.id == deleted
        await pilot.press("r")
        await until(pilot, lambda: not any(x.deleted for x in screen.lessons) and len(screen.lessons) == 2)
    kinds = [(e.kind, e.actor, e.data["lesson_id"]) for e in
             await store.events(kinds=["memory.deleted", "memory.restored"])]
    assert kinds == [("memory.deleted", HUMAN, deleted), ("memory.restored", HUMAN, deleted)] * 2
    # restored means recalled again
    words = (await memory.get(deleted)).text
    assert deleted in [lesson.id for lesson in await memory.recall(words, product="shop")]


async def test_only_a_recorded_restore_lifts_a_tombstone(store, tmp_path):
    """The SQL trigger: a write that clears `deleted` without a `memory.restored` event is ignored."""
    memory, a, _ = await two_lessons(store)
    await memory.delete(a, actor=HUMAN)
    await store.flush()
    db = tmp_path / "memory" / "cockpit.db"

    def raw_undelete(path) -> int:
        con = sqlite3.connect(path)
        try:
            con.execute("UPDATE lessons SET deleted = 0 WHERE id = ?", (a,))
            con.commit()
            return con.execute("SELECT deleted FROM lessons WHERE id = ?", (a,)).fetchone()[0]
        finally:
            con.close()

    # the attack lands on a copy whose trigger is dropped (the defence is what stops it)
    copy = tmp_path / "copy.db"
    src = sqlite3.connect(db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.execute("DROP TRIGGER lessons_stay_deleted")
    dst.commit()
    dst.close()
    assert raw_undelete(copy) == 0
    # with the trigger, the same write changes nothing
    assert raw_undelete(db) == 1
    assert (await memory.get(a)).deleted
    # the recorded restore lifts it; a second restore is refused
    restored = await memory.restore(a, actor=HUMAN)
    assert not restored.deleted
    with pytest.raises(Refused, match="not deleted"):
        await memory.restore(a, actor=HUMAN)
    # deleted again: the old restore event does not count for the new tombstone
    await memory.delete(a, actor=HUMAN)
    await store.flush()
    assert raw_undelete(db) == 1


def test_cockpit_memory_restore_on_the_command_line(tmp_path, capsys):
    """`cockpit memory delete L1`, then `cockpit memory restore L1`: back in search, both on record."""
    assert cli(["init", str(tmp_path / "f")]) == 0
    factory = str(tmp_path / "f" / "factory.toml")
    config = load_factory(factory)

    async def seed():
        s = await Store.open(config.store_path)
        try:
            m = Memory(s)
            return (await m.remember("Use Decimal for money, never float.", product=None, role="builder",
                                     source_task="T9", actor="builder-1")).lesson_id
        finally:
            await s.close()

    import asyncio

    lid = asyncio.run(seed())
    capsys.readouterr()
    assert cli(["memory", "delete", f"L{lid}", "-f", factory]) == 0
    assert f"cockpit memory restore L{lid}" in capsys.readouterr().out
    assert cli(["memory", "search", "decimal", "-f", factory]) == 0
    assert f"L{lid}" not in capsys.readouterr().out
    assert cli(["memory", "restore", f"L{lid}", "-f", factory]) == 0
    assert f"L{lid}" in capsys.readouterr().out
    assert cli(["memory", "search", "decimal", "-f", factory]) == 0
    assert "Use Decimal for money" in capsys.readouterr().out
    assert cli(["memory", "restore", f"L{lid}", "-f", factory]) == 1
    assert "not deleted" in capsys.readouterr().err
