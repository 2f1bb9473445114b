"""The store adapter: aiosqlite, one batched writer, the append-only event log and its projections."""

from .store import Store, StoreError, Subscription

__all__ = ["Store", "StoreError", "Subscription"]
