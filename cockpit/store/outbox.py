"""The outbox's reads and writes: what the notify sender, `cockpit notify` and the notifications screen ask of it.

Why here: the outbox is the store's table (its rows are written with the events that make them, in the same
transaction); the sender decides what to send, when and after which backoff, and records the outcome through
these names, never through SQL of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .store import Store


@dataclass(frozen=True, slots=True)
class PendingRow:
    id: int
    key: str
    body: str  # the notice, as JSON
    attempts: int
    created_ts: float
    task_id: str | None
    product: str | None


@dataclass(frozen=True, slots=True)
class ChannelOutcome:
    """One channel's answer to one try of a row: `state` sent, pending (tried again later) or failed (given up)."""

    outbox_id: int
    channel: str
    state: str
    error: str
    sent_ts: float | None


@dataclass(frozen=True, slots=True)
class RowRetry:
    """A row a channel refused: tried again at `next_try`, or `state` failed once the tries are spent."""

    outbox_id: int
    attempts: int
    next_try: float
    error: str
    state: str


async def due(store: Store, now: float, *, muted: Sequence[str] = (), limit: int = 100) -> list[PendingRow]:
    """Pending rows whose time has come, oldest first; a muted product's rows stay where they are."""
    where = f" AND (product IS NULL OR product NOT IN ({','.join('?' * len(muted))}))" if muted else ""
    rows = await store.query(
        "SELECT id, key, body, attempts, created_ts, task_id, product FROM outbox WHERE state = 'pending' "
        f"AND next_try <= ?{where} ORDER BY id LIMIT ?", (now, *muted, limit))
    return [PendingRow(*r) for r in rows]


async def mark_stale(store: Store, ids: Sequence[int]) -> None:
    """Rows that need no sending any more (their task moved on): kept, never sent."""
    await store.submit(None, [("UPDATE outbox SET state = 'stale' WHERE id = ?", (i,)) for i in ids])


async def accepted(store: Store, ids: Sequence[int]) -> dict[int, set[str]]:
    """For each row, the channels that already accepted it."""
    out: dict[int, set[str]] = {}
    if not ids:
        return out
    for oid, channel in await store.query(
            f"SELECT outbox_id, channel FROM outbox_delivery WHERE state = 'sent' AND outbox_id IN "
            f"({','.join('?' * len(ids))})", tuple(ids)):
        out.setdefault(oid, set()).add(channel)
    return out


async def record(store: Store, *, outcomes: Sequence[ChannelOutcome], sent: Sequence[int], retries: Sequence[RowRetry],
                 now: float) -> None:
    """Each channel's outcome, the rows now sent and the rows to try again, in one transaction."""
    stmts: list[tuple[str, tuple[Any, ...]]] = [(
        "INSERT INTO outbox_delivery(outbox_id, channel, state, attempts, last_error, sent_ts) "
        "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT(outbox_id, channel) DO UPDATE SET state = excluded.state, "
        "attempts = outbox_delivery.attempts + 1, last_error = excluded.last_error, sent_ts = excluded.sent_ts",
        (o.outbox_id, o.channel, o.state, o.error[:500], o.sent_ts)) for o in outcomes]
    stmts += [("UPDATE outbox SET state = 'sent', sent_ts = ?, attempts = attempts + 1, last_error = '' WHERE id = ?",
               (now, oid)) for oid in sent]
    stmts += [("UPDATE outbox SET attempts = ?, next_try = ?, last_error = ?, state = ? WHERE id = ?",
               (r.attempts, r.next_try, r.error[:500], r.state, r.outbox_id)) for r in retries]
    await store.submit(None, stmts)


async def every_row(store: Store) -> list[tuple[Any, ...]]:
    """(id, key, state, attempts, last error, created, sent, body) of every row, newest first."""
    return await store.query("SELECT id, key, state, attempts, last_error, created_ts, sent_ts, body FROM outbox "
                             "ORDER BY id DESC")


async def channel_states(store: Store) -> dict[int, dict[str, dict[str, Any]]]:
    """Per row, per channel it was tried on: its state, tries and last error."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for oid, name, state, attempts, error in await store.query(
            "SELECT outbox_id, channel, state, attempts, last_error FROM outbox_delivery ORDER BY outbox_id, channel"):
        out.setdefault(oid, {})[name] = {"state": state, "attempts": attempts, "error": error}
    return out


async def requeue_failed(store: Store) -> int:
    """Every failed row (and its failed channels) back in the queue, due now; returns how many rows."""
    (n,) = (await store.query("SELECT COUNT(*) FROM outbox WHERE state = 'failed'"))[0]
    await store.submit(None, [
        ("UPDATE outbox_delivery SET state = 'pending' WHERE state = 'failed'", ()),
        ("UPDATE outbox SET state = 'pending', attempts = 0, next_try = 0 WHERE state = 'failed'", ())])
    return int(n)


async def has_key(store: Store, key: str) -> bool:
    """Whether a row with this dedup key was ever written."""
    return bool(await store.query("SELECT 1 FROM outbox WHERE key = ? LIMIT 1", (key,)))
