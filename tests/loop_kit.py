"""Test helper: how long the event loop stood still while a coroutine ran (a ticker every 10 ms)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def longest_gap_while(aw: Awaitable[T]) -> tuple[T, float]:
    """(the awaitable's result, the longest gap in seconds between two ticks of a 10 ms ticker meanwhile)."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    try:
        result = await aw
    finally:
        done.set()
        await ticker
    return result, max(gaps)
