"""Watch the factory's rules directory and re-read it as soon as a file is saved.

The RuleBook is also re-read before every model call, so an edit is in force for the
next call whatever this watcher does; the watcher is what puts `rules.changed` (old and
new hash) or `rules.error` (file, line) on screen the moment the file is saved, even
while no agent is calling. watchfiles' default 1600 ms debounce is far too slow for
that: a short debounce and step are set here, and `stop` ends it cleanly on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from watchfiles import Change, awatch

from .rules import RuleBook

log = logging.getLogger(__name__)

DEBOUNCE_MS = 30
STEP_MS = 10
RETRY_S = 0.5


def _is_rule_file(change: Change, path: str) -> bool:
    name = Path(path).name
    # directories (a rename of a whole folder) have no suffix; editors' temp files start with a dot
    return not name.startswith(".") and (name.endswith(".md") or "." not in name)


async def watch_rules(book: RuleBook, stop: asyncio.Event, *, debounce_ms: int = DEBOUNCE_MS,
                      step_ms: int = STEP_MS, ready: asyncio.Event | None = None) -> None:
    """Re-read `book` on every change under its rules dir until `stop` is set.

    A missing or vanished directory is waited for, never an error: the rules in force stay."""
    book.refresh()
    while not stop.is_set():
        directory = book.rules_dir
        if not directory.is_dir():
            if ready is not None:
                ready.set()
            try:
                await asyncio.wait_for(stop.wait(), timeout=RETRY_S)
            except asyncio.TimeoutError:
                pass
            book.refresh()
            continue
        try:
            watcher = awatch(directory, watch_filter=_is_rule_file, debounce=debounce_ms, step=step_ms,
                             stop_event=stop, recursive=True, yield_on_timeout=True, rust_timeout=500)
            async for _changes in watcher:
                if ready is not None:
                    ready.set()  # the first (timeout) yield: the OS watch is in place
                book.refresh()
                if not directory.is_dir():
                    break
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a watch that failed (dir deleted, inotify limits): retry, never crash
            log.warning("watching %s failed (%s); retrying", directory, e)
            try:
                await asyncio.wait_for(stop.wait(), timeout=RETRY_S)
            except asyncio.TimeoutError:
                pass


class RulesWatcher:
    """Start/stop wrapper the orchestrator owns for the duration of `run()`."""

    def __init__(self, book: RuleBook):
        self.book = book
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self.stop_event.clear()
            self._task = asyncio.create_task(watch_rules(self.book, self.stop_event, ready=self.ready),
                                             name="rules-watch")

    async def stop(self) -> None:
        self.stop_event.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=2)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:
                log.exception("rules watcher ended with an error")
            self._task = None
