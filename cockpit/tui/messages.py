"""The cockpit's own Messages, in one place (as Harlequin keeps them)."""

from __future__ import annotations

import asyncio

from textual.message import Message

from ..domain.events import Event


class EventsArrived(Message, bubble=False):
    """A batch of committed events from the store, coalesced by the bridge.

    One message per batch, never one per event: the screen refreshes its panes
    once per message, so a burst of ten thousand text chunks costs one repaint.
    `history` is True for the batch read from the log at start-up. The handler
    sets `consumed` when it is done, and the bridge posts no next batch before
    that: while the screen is busy, new events pile up into one bigger batch.
    """

    def __init__(self, events: list[Event], *, history: bool = False) -> None:
        super().__init__()
        self.events = events
        self.history = history
        self.consumed = asyncio.Event()
