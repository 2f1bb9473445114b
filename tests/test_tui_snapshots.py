"""Snapshots (pytest-textual-snapshot) of the main, task, agent log and spend screens at 80x24 and 160x48.

The factory is fixed: events with fixed timestamps, ledger rows with fixed times, the app's clock fixed,
the time zone UTC, the cursor blink off; the store is a real SQLite file, opened inside the app's own loop.
Update with `pytest tests/test_tui_snapshots.py --snapshot-update` after looking at the report.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from cockpit.domain import Kind
from cockpit.factory.agent_log import AgentLogWriter
from cockpit.store import Store
from cockpit.tui import CockpitApp
from cockpit.tui.screens.agent_log import AgentLogScreen
from cockpit.tui.screens.spend import SpendScreen
from cockpit.tui.screens.task import TaskScreen
from cockpit.tui.widgets.log_view import LogView
from tui_kit import append, blocked_task, make_config, new_task, start, until

NOW = 1767261600.0  # 2026-01-01 10:00:00 UTC
SIZES = [(80, 24), (160, 48)]


@pytest.fixture(scope="module", autouse=True)
def utc():
    """Times on screen (and in the agents' logs) in UTC, whatever the machine's zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


async def fill(root) -> None:
    """Four tasks on two products: one blocked, one being built, one in the merge queue, one landed; a week of spend."""
    config = make_config(root)
    store = await Store.open(config.store_path)
    try:
        t0 = NOW - 3600
        t1 = await blocked_task(store, "shop", "Add CSV export of orders", ts=t0)
        t2 = await new_task(store, "shop", "Add order discounts", ts=t0 + 60)
        await start(store, "shop", t2, "builder-2", ts=t0 + 120)
        await append(store, Kind.AGENT_TOOL, "builder-2", "shop", t2,
                     {"name": "write_file", "input": {"path": "shop/discounts.py"}}, ts=t0 + 180)
        for product, title, tid_ts, merged in (("blog", "RSS feed", t0 + 200, False), ("blog", "Tag pages", t0 + 300, True)):
            t = await new_task(store, product, title, ts=tid_ts)
            await start(store, product, t, f"builder-{3 if merged else 4}", ts=tid_ts + 5)
            sha = f"{'d' if merged else 'c'}0ffee{tid_ts:.0f}"
            for kind, actor, data in [
                (Kind.COMMITTED, f"builder-{3 if merged else 4}", {"sha": sha}),
                (Kind.SUBMITTED, f"builder-{3 if merged else 4}", {}),
                (Kind.AGENT_FINISHED, f"builder-{3 if merged else 4}", {"reason": "called submit"}),
                (Kind.VERDICT, "system", {"gate": "tests", "commit": sha, "outcome": "pass", "detail": "12 passed"}),
                (Kind.CHECKED, "system", {}),
                (Kind.APPROVED, "reviewer-1", {"commit": sha, "note": "clear and tested"}),
                (Kind.READY, "system", {}),
            ]:
                await append(store, kind, actor, product, t, data, ts=tid_ts + 30)
            if merged:
                await append(store, Kind.VERDICT, "system", product, t, {"gate": "merge", "commit": "m" + sha, "source": sha,
                                                                         "base": "b0", "outcome": "pass"}, ts=tid_ts + 60)
                await append(store, Kind.MERGED, "system", product, t, {"merged_commit": "m" + sha}, ts=tid_ts + 61)
        # a week of spend, settled: the ledger rows and the task spend they add up to
        rows = []
        for day in range(7):
            for i, (task_id, product) in enumerate(((t1, "shop"), (t2, "shop"), ("T3", "blog"))):
                usd = round(0.05 * (day + 1) * (i + 1), 4)
                ts = NOW - 86400 * (6 - day) - 600 * (i + 1)
                rows.append((f"call-{day}-{i}", ts, task_id, product, "builder-1", "claude-sonnet-5-5", usd))
        await store.submit(None, sql=[(
            "INSERT INTO ledger(call_id, ts, task_id, product, actor, model, state, reserved_usd, settled_usd, "
            "input_tokens, output_tokens, cache_read_tokens, settled_ts) VALUES (?,?,?,?,?,?, 'settled', ?, ?, 1000, 100, "
            "600, ?)", (cid, ts, tid, p, actor, model, usd, usd, ts)) for cid, ts, tid, p, actor, model, usd in rows])
        for cid, ts, tid, p, _, _, usd in rows:
            await append(store, Kind.SPEND, "system", p, tid, {"call_id": cid, "usd": usd}, ts=ts)
        # the agents' logs, as the factory writes them
        writer = AgentLogWriter(store, config.memory_path / "logs")
        await writer.write(await store.events())
    finally:
        await store.close()


@pytest.fixture(scope="module")
def factory_root(tmp_path_factory, utc):
    root = tmp_path_factory.mktemp("snap")
    asyncio.run(fill(root))
    return root


class SnapshotApp(CockpitApp):
    """The cockpit on a store it opens inside its own loop (snap_compare runs the app with app.run)."""

    def __init__(self, root) -> None:
        super().__init__(None, make_config(root), clock=lambda: NOW, cursor_blink=False)  # type: ignore[arg-type]

    async def on_load(self) -> None:
        self.store = await Store.open(self.config.store_path)

    async def on_unmount(self) -> None:
        await self.store.close()


async def settled(pilot) -> None:
    """The main screen has drawn the history, the agents and the figures."""
    app = pilot.app
    main = app.main_screen
    await until(pilot, lambda: main.activity.line_count and main._burn > 0 and main.panes["shop"].agent_lines,
                timeout=60)
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, factory_root, size):
    assert snap_compare(SnapshotApp(factory_root), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_task_screen(snap_compare, factory_root, size):
    async def open_task(pilot):
        await settled(pilot)
        pilot.app.open_task("T1")
        await until(pilot, lambda: isinstance(pilot.app.screen, TaskScreen)
                    and pilot.app.screen.query_one("#verdicts").row_count, timeout=60)
        await pilot.pause(0.2)

    assert snap_compare(SnapshotApp(factory_root), terminal_size=size, run_before=open_task)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_agent_log_screen(snap_compare, factory_root, size):
    async def open_log(pilot):
        await settled(pilot)
        pilot.app.open_agent_log("builder-1")
        await until(pilot, lambda: isinstance(pilot.app.screen, AgentLogScreen)
                    and pilot.app.screen.query_one(LogView).indexed, timeout=60)
        await pilot.pause(0.2)

    assert snap_compare(SnapshotApp(factory_root), terminal_size=size, run_before=open_log)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_spend_screen(snap_compare, factory_root, size):
    async def open_spend(pilot):
        await settled(pilot)
        await pilot.press("dollar_sign")
        await until(pilot, lambda: isinstance(pilot.app.screen, SpendScreen) and pilot.app.screen.loaded, timeout=60)
        await pilot.pause(0.2)

    assert snap_compare(SnapshotApp(factory_root), terminal_size=size, run_before=open_spend)
