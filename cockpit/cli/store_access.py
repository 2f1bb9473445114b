"""One way for a command to use the factory's store: open it, run the command's coroutine, close it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..config import FactoryConfig
from ..store import Store

T = TypeVar("T")


def with_store(config: FactoryConfig, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Run `fn` on the factory's store (its budgets loaded, so a command meets the same limits as the engine)."""

    async def run() -> T:
        store = await Store.open(config.store_path, budgets=config.budget_limits())
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())
