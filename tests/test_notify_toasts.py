"""A burst of blocks does not flood the screen with toasts: the first few get their own, the rest one toast that
names them (the notifications' "never spam", on the screen too). Real store, the real app under Textual's pilot."""

from __future__ import annotations

from tui_kit import blocked_task, until

from cockpit.tui import screens
from cockpit.tui.app import CockpitApp

SIZE = (140, 40)


def block_toasts(app) -> list:
    return [n for n in app._notifications if n.title == "Blocked"]


async def burst(store, n: int) -> list[str]:
    return [await blocked_task(store, "shop" if i % 2 else "blog", f"task {i}") for i in range(n)]


async def test_without_the_fold_a_burst_is_a_toast_each(store, config, monkeypatch):
    """Liveness: the fold off (its limit out of reach), twelve blocks are twelve toasts."""
    monkeypatch.setattr(screens.main, "BLOCK_TOASTS", 1000)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await burst(store, 12)
        await until(pilot, lambda: len(block_toasts(app)) == 12)


def folded_ids(app) -> list[str]:
    """The tasks named by the folding toasts (there may be two if the burst outlasts one fold)."""
    out = []
    for n in block_toasts(app):
        if "more tasks wait for you: " in n.message:
            out += n.message.split(": ", 1)[1].split(". n:")[0].split(", ")
    return out


async def test_a_burst_of_blocks_is_three_toasts_and_one_that_names_the_rest(store, config, monkeypatch):
    monkeypatch.setattr(screens.main, "FOLD_EVERY_S", 0.5)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        ids = await burst(store, 10)
        await until(pilot, lambda: sorted(folded_ids(app)) == sorted(ids[3:]), timeout=30)
        toasts = block_toasts(app)
        assert [t.message.split()[0] for t in toasts[:3]] == ids[:3]  # the first three: a toast each
        assert len(toasts) <= 5, [t.message for t in toasts]  # the other seven: folded (one toast, two if slow)
