"""Repaint pacing: a dirty screen repaints once a frame's time has passed since its last repaint, not on a
fixed 60 Hz grid whose skip logic could hold it back two frames (cockpit/tui/pacing.py; the figure is in
`make bench`, ui_load, never asserted here)."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil

import pytest

from cockpit.store import Store
from cockpit.tui import CockpitApp
from cockpit.tui import screens as screens_pkg
from cockpit.tui.pacing import PacedRepaint, PacedTimer, next_repaint_at
from tui_kit import make_config, new_task, screen_text, until

FRAME = 1 / 60


def test_a_screen_dirty_after_a_quiet_spell_repaints_at_once():
    assert next_repaint_at(last=10.0, now=10.5, interval=FRAME) == 10.5
    assert next_repaint_at(last=-math.inf, now=0.0, interval=FRAME) == 0.0


def test_a_screen_dirty_within_a_frame_of_its_last_repaint_waits_for_the_rest_of_that_frame_only():
    # Textual's grid timer, after a late tick, waited for the grid point after next: up to two frames
    assert next_repaint_at(last=10.0, now=10.004, interval=FRAME) == pytest.approx(10.0 + FRAME)
    assert next_repaint_at(last=10.0, now=10.0 + FRAME, interval=FRAME) == pytest.approx(10.0 + FRAME)


def test_every_screen_of_the_cockpit_is_paced():
    """A screen added later must not fall back to the grid timer unnoticed."""
    from textual.screen import Screen

    modules = [importlib.import_module(f"{screens_pkg.__name__}.{info.name}")
               for info in pkgutil.iter_modules(screens_pkg.__path__)]
    found = [obj for m in modules for obj in vars(m).values()
             if inspect.isclass(obj) and issubclass(obj, Screen) and obj.__module__ == m.__name__]
    assert len(found) >= 10
    unpaced = [cls.__name__ for cls in found if not issubclass(cls, PacedRepaint)]
    assert not unpaced, f"screens repainting on Textual's grid timer: {unpaced}"


async def test_the_running_cockpit_repaints_through_the_paced_timer(tmp_path):
    """Textual reads a screen's repaint timer from `_update_timer`: if a Textual release stops doing so, the
    paced timer would sit unused: this test sees it tick as the cursor moves and a task arrives."""
    store = await Store.open(tmp_path / "memory" / "cockpit.db")
    try:
        await new_task(store, "shop", "Add CSV export")
        await new_task(store, "shop", "Fix rounding")
        app = CockpitApp(store, make_config(tmp_path), cursor_blink=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            screen = app.screen
            timer = screen._update_timer
            assert isinstance(timer, PacedTimer)
            ticks = timer.ticks
            table = app.main_screen.panes["shop"].table
            table.focus()
            await pilot.press("down")
            await until(pilot, lambda: table.cursor_row == 1 and timer.ticks > ticks)
            ticks = timer.ticks
            await new_task(store, "shop", "Third")
            await until(pilot, lambda: table.row_count == 3 and timer.ticks > ticks)
            assert "Third" in screen_text(app)
    finally:
        await store.close()


def test_the_textual_internals_pacing_relies_on_are_there():
    """pacing.py overrides Textual privates; a Textual that changed them must fail here, by name, not in use."""
    from importlib.metadata import version

    from cockpit.tui.pacing import SUPPORTED_TEXTUAL, textual_internals_missing

    textual_internals_missing.cache_clear()
    missing = textual_internals_missing()
    assert not missing, (
        f"textual {version('textual')} changed internals that cockpit/tui/pacing.py relies on: {', '.join(missing)}. "
        f"Supported: textual {SUPPORTED_TEXTUAL} (README); pin it back in uv.lock or port pacing.py.")


def test_the_internals_check_notices_a_changed_textual(monkeypatch):
    """Liveness of the check above: a Timer whose _tick lost its keywords and a Screen without the repaint
    callback are named, and the paced screen falls back to Textual's own timer."""
    from textual.timer import Timer

    from cockpit.tui.pacing import textual_internals_missing

    async def _tick(self, when):  # the shape a refactor could give it
        return None

    monkeypatch.setattr(Timer, "_tick", _tick)
    monkeypatch.delattr(Screen_cls(), "_on_timer_update")
    textual_internals_missing.cache_clear()
    try:
        missing = textual_internals_missing()
    finally:
        monkeypatch.undo()
        textual_internals_missing.cache_clear()
    assert "Timer._tick(*, next_timer, count)" in missing
    assert any(m.startswith("Screen._on_timer_update") for m in missing)
    assert textual_internals_missing() == ()


def Screen_cls():
    from textual.screen import Screen

    return Screen
