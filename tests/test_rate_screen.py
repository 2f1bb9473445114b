"""The rate screen on a real store holding a hand-built log: a pilot that presses its keys, and a snapshot."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from ratelog import BASE, HOUR, WEEK_H, Log
from test_rate_metrics import three_week_log
from textual.app import App
from textual.widgets import DataTable, OptionList, Static

from cockpit.config import FactoryConfig, FactorySection, ProductConfig
from cockpit.domain.metrics import METRICS
from cockpit.store import Store
from cockpit.tui.screens.rate import MetricCard, RateScreen, product_summaries, summary_line

NOW = BASE + 3 * WEEK_H * HOUR


def config() -> FactoryConfig:
    return FactoryConfig(factory=FactorySection(name="acme", human="human:you"),
                         products=[ProductConfig(name=n, path=n, test_command="pytest -q")
                                   for n in ("up", "down", "steady", "tiny")])


async def fill(path) -> None:
    """The three-week log, appended through the store (the domain validates every task event)."""
    store = await Store.open(path)
    try:
        for e in three_week_log().events:
            await store.submit(e.model_copy(update={"id": None}))
        await store.flush()
    finally:
        await store.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("rate") / "cockpit.db"
    asyncio.run(fill(path))
    return path


class RateApp(App[None]):
    """Opens the store inside its own loop (the store's writer is a task of it) and shows the rate."""

    def __init__(self, path) -> None:
        super().__init__()
        self.path = path
        self.store: Store | None = None

    async def on_mount(self) -> None:
        self.store = await Store.open(self.path)
        await self.push_screen(RateScreen(self.store, config(), now=NOW, since=BASE))

    async def on_unmount(self) -> None:
        if self.store is not None:
            await self.store.close()


async def loaded(pilot) -> RateScreen:
    for _ in range(200):
        screen = pilot.app.screen
        if isinstance(screen, RateScreen) and screen.rate is not None and screen.query_one(DataTable).row_count:
            await pilot.pause()
            return screen
        await pilot.pause(0.02)
    raise AssertionError("the rate screen never showed a rate")


def text(screen: RateScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_the_screen_shows_each_products_verdict_and_every_metric(db, tmp_path):
    own = tmp_path / "cockpit.db"  # this test appends: its own copy of the module's store
    for suffix in ("", "-wal", "-shm"):
        if db.with_name(db.name + suffix).exists():
            shutil.copy(db.with_name(db.name + suffix), own.with_name(own.name + suffix))
    app = RateApp(own)
    async with app.run_test(size=(130, 48)) as pilot:
        screen = await loaded(pilot)
        scopes = screen.query_one("#rate-scopes", OptionList)
        assert [scopes.get_option_at_index(i).id for i in range(scopes.option_count)] == [
            "*", "down", "steady", "tiny", "up"]
        assert "the factory" in text(screen, "#rate-verdict")
        table = screen.query_one(DataTable)
        assert table.row_count == len(METRICS)
        # to "up": compounding, with the numbers behind it
        for _ in range(4):
            await pilot.press("down")
        await pilot.pause()
        assert screen.selected == "up"
        verdict = text(screen, "#rate-verdict")
        assert "up: compounding" in verdict and "6 of 6 improving" in verdict and "merged +133%" in verdict
        card = screen.query_one("#card-merged", MetricCard)
        assert card.has_class("-improving") and "↑ +133%" in str(card.query_one(Static).render())
        await pilot.press("up")  # tiny: too few tasks to tell, and why
        await pilot.pause()
        verdict = text(screen, "#rate-verdict")
        assert "tiny: too few tasks to tell" in verdict and "2 merged (at least 8 needed)" in verdict
        await pilot.press("d")  # per day: one sparkline character per day of the window
        await pilot.pause()
        assert screen.period == "day"
        assert len(str(table.get_cell("merged", "trend"))) == 22  # 21 days and the last instant of the window
        # new events: `r` folds them in (reading only what was appended since)
        log = Log()
        log.task("tiny", "tiny-3", at=2 * WEEK_H + 50, lead_h=2)
        for e in log.events:
            await app.store.append(e.model_copy(update={"id": None}))
        read_before = screen._reader.last_id
        await pilot.press("r")
        for _ in range(200):
            if screen.rate.scopes["tiny"].totals["merged"] == 3:
                break
            await pilot.pause(0.02)
        assert screen.rate.scopes["tiny"].totals["merged"] == 3 and screen._reader.last_id > read_before
        assert "3 merged (at least 8 needed)" in text(screen, "#rate-verdict")


async def test_summary_lines_for_the_product_panes(db):
    store = await Store.open(db)
    try:
        lines = await product_summaries(store, config(), now=NOW)
    finally:
        await store.close()
    assert lines["up"] == "compounding · merged 15↑ · 1st pass 67%↑ · $/task $0.62↑ · lead 7.0h↑"
    assert lines["down"].startswith("worse · merged 15↓")
    assert lines["tiny"].startswith("too few to tell · merged 2")
    assert summary_line(None) == "rate: nothing merged yet"


def test_rate_screen_snapshot(db, snap_compare, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()

    async def run_before(pilot) -> None:
        await loaded(pilot)
        for _ in range(4):
            await pilot.press("down")
        await pilot.pause()

    try:
        assert snap_compare(RateApp(db), terminal_size=(130, 48), run_before=run_before)
    finally:
        monkeypatch.undo()
        time.tzset()
