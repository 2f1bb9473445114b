"""The main screen on small terminals (issue 20, points 5 and 6), with the pilot on a real store.

Eight products, one with ten tasks whose last one is blocked: at 80x24 and 120x36 every product shows as at least a
line with its counts, the Needs you strip stays, `n` brings the blocked task's row into view, the footer ends at a
whole key; and the blocked task is the first row of its pane. At 160x48 with room for every pane nothing folds.
"""

from __future__ import annotations

import pytest

from cockpit.config import ProductConfig
from cockpit.tui import CockpitApp
from cockpit.tui.widgets.footer import FittedFooter
from cockpit.tui.widgets.product_pane import ProductPane, ProductPanes
from textual.widgets._footer import FooterKey
from tui_kit import blocked_task, make_config, new_task, screen_text, until

PRODUCTS = ["shop", "blog", "ledger", "weather", "inventory", "journal", "search", "mobile"]


@pytest.fixture
def config(tmp_path):
    base = make_config(tmp_path)
    more = [ProductConfig(name=n, path=n, test_command="pytest -q") for n in PRODUCTS[2:]]
    return base.model_copy(update={"products": [*base.products, *more]})


async def fill(store) -> str:
    for product in PRODUCTS:
        await new_task(store, product, f"First task of {product}")
    for i in range(8):
        await new_task(store, "weather", f"Weather chore {i}")
    return await blocked_task(store, "weather", "Round Kelvin to one decimal")


def footer_is_whole(app) -> bool:
    footer = app.screen.query_one(FittedFooter)
    keys = [k for k in footer.query(FooterKey) if k.display]
    palette = [k for k in keys if k.has_class("-command-palette")]
    limit = footer.region.right - sum(k.outer_size.width for k in palette)
    return bool(palette) and all(k.region.right <= limit for k in keys if k not in palette)


@pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_product_in_sight_and_n_brings_the_blocked_row_into_view(store, config, size):
    blocked = await fill(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: "Needs you (1)" in screen_text(app))
        box = app.screen.query_one(ProductPanes)
        await until(pilot, lambda: box.has_class("-compact"))
        wanted = [f"{p} · {10 if p == 'weather' else 1} task{'s' if p == 'weather' else ''}" for p in PRODUCTS]
        await until(pilot, lambda: all(w in screen_text(app) for w in wanted))
        assert "Needs you (1)" in screen_text(app)
        # at the start, the pane of what waits for the human is the open one
        assert box.expanded in (None, "weather") and not next(p for p in box.query(ProductPane)
                                                              if p.product == "weather").has_class("-collapsed")
        # blocked first in its pane, whatever the store's order (it was created last)
        weather = next(p for p in box.query(ProductPane) if p.product == "weather")
        assert weather.table.ordered_rows[0].key.value == blocked
        # the human goes to another pane: weather folds to its line
        app.main_screen.focus_product("shop")
        await until(pilot, lambda: weather.has_class("-collapsed") and f"{blocked}  Round Kelvin" not in screen_text(app))
        # n: the task's pane opens (the others fold) and its row is on screen
        await pilot.press("n")
        await until(pilot, lambda: box.expanded == "weather" and not weather.has_class("-collapsed"))
        await until(pilot, lambda: any(line.lstrip("│ ").startswith(f"{blocked}  Round Kelvin")
                                       for line in screen_text(app).splitlines()))
        assert all(p.has_class("-collapsed") for p in box.query(ProductPane) if p.product != "weather")
        await until(pilot, lambda: footer_is_whole(app))
        assert screen_text(app).rstrip().endswith("^p Find")
        # back from a task's screen (the footer recomposed while covered): still cut at a whole key
        app.open_task(blocked)
        await until(pilot, lambda: f"{blocked} · weather ·" in screen_text(app))
        await pilot.press("escape")
        await until(pilot, lambda: "Needs you (1)" in screen_text(app) and footer_is_whole(app))
        assert screen_text(app).rstrip().endswith("^p Find")


async def test_with_room_for_every_pane_nothing_folds(store, tmp_path):
    config = make_config(tmp_path)
    blocked = await blocked_task(store, "shop", "Add CSV export")
    app = CockpitApp(store, config)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: "Needs you (1)" in screen_text(app))
        box = app.screen.query_one(ProductPanes)
        await pilot.pause(0.1)
        assert not box.has_class("-compact")
        assert not any(p.has_class("-collapsed") for p in box.query(ProductPane))
        assert f"{blocked}  Add CSV export" in screen_text(app)
