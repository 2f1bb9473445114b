"""The coalescing bridge: committed store events → batches → one Message each.

Agents stream text in small chunks, hundreds a second; the screen must not
repaint per chunk. The bridge waits for a first event, lets the burst gather
for `interval` seconds, and posts everything it has as one `EventsArrived`.
It posts the next batch only once the screen has consumed the previous one, so
a slow screen gets fewer, bigger batches instead of a growing message queue
(Toolong backs off the same way when its queue grows).
"""

from __future__ import annotations

import asyncio

from textual.message_pump import MessagePump

from ..store import Store
from .messages import EventsArrived

DEFAULT_INTERVAL = 1 / 20
"""At most 20 batches a second."""

HISTORY = 200
"""Events read back from the log at start-up, so a restart shows what happened."""


async def run_bridge(store: Store, target: MessagePump, *, interval: float = DEFAULT_INTERVAL,
                     history: int = HISTORY) -> None:
    """Feed `target` until cancelled (run it as a worker of `target`)."""
    sub = store.subscribe()  # before reading history: nothing committed in between is lost
    try:
        past = await store.events(newest_first=True, limit=history) if history else []
        past.reverse()
        seen = (past[-1].id or 0) if past else 0
        last = EventsArrived(past, history=True)
        if not target.post_message(last):
            return
        while True:
            first = await sub.get()
            await asyncio.sleep(interval)
            await last.consumed.wait()
            batch = [e for e in [first, *sub.drain()] if (e.id or 0) > seen]
            if not batch:
                continue
            seen = batch[-1].id or seen
            last = EventsArrived(batch)
            if not target.post_message(last):
                return
    finally:
        sub.close()
