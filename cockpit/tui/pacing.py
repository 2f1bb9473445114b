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
import math

from textual import _time
from textual.screen import UPDATE_PERIOD, Screen
from textual.timer import EventTargetGone, Timer


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
        if self._paced_update_timer is None:
            timer = PacedTimer(self, UPDATE_PERIOD, name="screen_update", callback=self._on_timer_update, pause=True)
            timer._start()
            self._timers.add(timer)
            self._paced_update_timer = timer
        return self._paced_update_timer
