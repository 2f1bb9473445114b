"""The commands the cockpit's new keys call (edit a task, pause/resume/stop an agent): the rules live in the domain
and the store, so they hold for any caller, not only the screen."""

from __future__ import annotations

import pytest

from cockpit.domain import Event, Kind, TaskState
from cockpit.domain.errors import Refused
from cockpit.factory import commands
from cockpit.store import Store
from factory_kit import write_plain_factory
from tui_kit import HUMAN, new_task


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "memory" / "cockpit.db")
    yield s
    await s.close()


async def test_a_human_edits_an_open_task_and_the_change_is_folded(store):
    t = await new_task(store, "shop", "Add CSV")
    ev = await commands.edit_task(store, t, actor=HUMAN, title="Add CSV export", body="quoted", priority=2)
    assert ev.kind == Kind.TASK_EDITED and ev.data == {"title": "Add CSV export", "body": "quoted", "priority": 2}
    task = store.task(t)
    assert (task.title, task.body, task.priority) == ("Add CSV export", "quoted", 2)


async def test_edits_that_change_nothing_or_come_from_an_agent_or_touch_a_done_task_are_refused(store):
    t = await new_task(store, "shop", "Add CSV")
    with pytest.raises(Refused, match="nothing to change"):
        await commands.edit_task(store, t, actor=HUMAN, title="Add CSV")
    with pytest.raises(Refused, match="may not task.edited"):
        await store.append(Event(kind=Kind.TASK_EDITED, actor="builder-1", product="shop", task_id=t,
                                 data={"title": "mine now"}))
    with pytest.raises(Refused, match="whole number"):
        await store.append(Event(kind=Kind.TASK_EDITED, actor=HUMAN, product="shop", task_id=t,
                                 data={"priority": "high"}))
    with pytest.raises(Refused, match="missing 'title'"):
        await commands.edit_task(store, t, actor=HUMAN, title="   ")
    refused = await store.events(kinds=[Kind.REFUSED])
    assert [r.data["kind"] for r in refused] == [Kind.TASK_EDITED] * 4  # each refusal is on record
    assert store.task(t).title == "Add CSV" and store.task(t).state == TaskState.QUEUED


async def test_agent_commands_need_the_running_factory(store):
    for command in (commands.pause_agent, commands.resume_agent):
        with pytest.raises(Refused, match="no factory runs in this cockpit"):
            await command(store, None, "builder-1", actor=HUMAN)
    with pytest.raises(Refused, match="no factory runs in this cockpit"):
        await commands.stop_agent(store, None, "builder-1", actor=HUMAN)
    assert await store.events(kinds=["agent.paused", "agent.resumed", Kind.AGENT_STOPPED]) == []


async def test_a_task_added_from_a_shell_shows_in_the_running_cockpit(tmp_path):
    """`cockpit task add` in another terminal, the cockpit open meanwhile: the row appears, nothing collides."""
    import subprocess
    import sys
    from pathlib import Path

    from cockpit.config import load_factory
    from cockpit.tui import CockpitApp
    from tui_kit import screen_text, until

    (tmp_path / "shop").mkdir()
    (tmp_path / "blog").mkdir()
    config = load_factory(write_plain_factory(tmp_path, {"shop": "shop", "blog": "blog"}, test_command="pytest -q"))
    store = await Store.open(config.store_path)
    try:
        first = await new_task(store, "shop", "Opened in the cockpit")
        app = CockpitApp(store, config, cursor_blink=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: "Opened in the cockpit" in screen_text(app))
            proc = subprocess.run([sys.executable, "-m", "cockpit", "task", "add", "shop", "Typed in a shell",
                                   "--factory", str(tmp_path / "factory.toml")],
                                  cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            added = proc.stdout.strip()
            await until(pilot, lambda: "Typed in a shell" in screen_text(app))
            assert store.task(added).title == "Typed in a shell" and added != first
            # and the cockpit's own next write lands after it, not on top of it
            second = await new_task(store, "shop", "Opened in the cockpit, again")
            assert int(second[1:]) == int(added[1:]) + 1
            await until(pilot, lambda: "Opened in the cockpit, again" in screen_text(app))
    finally:
        await store.close()
