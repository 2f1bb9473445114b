"""Screen repaints paced from the last repaint, not from a fixed grid.

Textual repaints a screen from an interval timer (60 Hz) that pauses while nothing is dirty. When a tick
comes late (a repaint or a batch of agent events overran the slot), the timer's skip logic moves on to the
grid point *after* the next one, so a screen that gets dirty just after a repaint waits up to two frames
(33 ms) before the next. Under 20 streaming agents, that is where most of the key → repaint p99 went
(50-60 ms, `make bench`: between the cursor moving and the repaint, the loop was busy 8 of 30 ms).

`PacedRepaint` gives a screen a timer that repaints as soon as a dirty screen has had one frame's time
since its last repaint: the same 60 Hz ceiling, no grid to miss.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from functools import cache

from textual import _time
from textual.screen import UPDATE_PERIOD, Screen
from textual.timer import EventTargetGone, Timer

SUPPORTED_TEXTUAL = "8.x"
"""The Textual releases whose internals this module was written against (README, pyproject.toml)."""


@cache
def textual_internals_missing() -> tuple[str, ...]:
    """What this module relies on in Textual's private internals and is no longer there, by name.

    Empty on a supported Textual. A newer Textual that renamed any of these would make the override
    silently inert or crash at the first repaint; tests/test_tui_pacing.py fails naming the entry instead,
    and `PacedRepaint` falls back to Textual's own timer."""
    missing: list[str] = []
    if not callable(getattr(_time, "get_time", None)):
        missing.append("textual._time.get_time()")
    screen_src = inspect.getsource(Screen)
    if "self._update_timer.resume()" not in screen_src or "def _update_timer(self)" not in screen_src:
        missing.append("Screen._update_timer (the property Screen reads its repaint timer from)")
    if not callable(getattr(Screen, "_on_timer_update", None)):
        missing.append("Screen._on_timer_update (the repaint callback)")
    params = inspect.signature(Timer.__init__).parameters
    for name in ("name", "callback", "pause"):
        if name not in params:
            missing.append(f"Timer(..., {name}=)")
    tick = inspect.signature(Timer._tick).parameters if callable(getattr(Timer, "_tick", None)) else {}
    if "next_timer" not in tick or "count" not in tick:
        missing.append("Timer._tick(*, next_timer, count)")
    for name in ("_run", "_start", "_active"):
        if not hasattr(Timer, name):
            missing.append(f"Timer.{name}")
    timer_init = inspect.getsource(Timer.__init__)
    for attr in ("self._interval", "self._reset"):
        if attr not in timer_init:
            missing.append(f"Timer {attr[5:]} attribute")
    if "self._timers" not in inspect.getsource(__import__("textual.message_pump", fromlist=["x"])):
        missing.append("MessagePump._timers (the set a pump stops its timers from)")
    return tuple(missing)


def next_repaint_at(last: float, now: float, interval: float) -> float:
    """When a screen that became dirty at `now` repaints: at once, unless its last repaint (at `last`) was
    less than a frame ago."""
    return max(now, last + interval)


class PacedTimer(Timer):
    """An interval timer for repaints: ticks when resumed, at most once per `interval` (from tick to tick)."""

    ticks = 0
    """Repaint ticks so far (a test's witness that Textual repaints through this timer)."""

    async def _run(self) -> None:
        last = -math.inf
        count = 0
        while True:
            await self._active.wait()
            now = _time.get_time()
            at = next_repaint_at(last, now, self._interval)
            if at > now:
                await asyncio.sleep(at - now)
                if not self._active.is_set():
                    continue  # paused meanwhile (a layout repainted the screen): wait for the next change
            self._reset = False  # nothing to reset: there is no grid
            last = _time.get_time()
            count += 1
            self.ticks = count
            try:
                await self._tick(next_timer=last, count=count)
            except EventTargetGone:
                break


class PacedRepaint(Screen):
    """Mix into a screen (before Textual's `Screen` in its bases) to repaint with a `PacedTimer`."""

    _paced_update_timer: PacedTimer | None = None

    @property
    def _update_timer(self) -> Timer:  # Textual's Screen reads its repaint timer from this property
        if textual_internals_missing():  # an unsupported Textual: its own grid timer, slower but correct
            return Screen._update_timer.fget(self)  # type: ignore[attr-defined]
        if self._paced_update_timer is None:
            timer = PacedTimer(self, UPDATE_PERIOD, name="screen_update", callback=self._on_timer_update, pause=True)
            timer._start()
            self._timers.add(timer)
            self._paced_update_timer = timer
        return self._paced_update_timer
