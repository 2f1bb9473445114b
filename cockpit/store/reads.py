"""Named reads on the store: every projection the engine and the screens need, each one SQL in one place.

Why: the schema is the store's business. A module above it asks a question by name (the spend per day, the
agents that ever started, the last green run of a key) and never writes SQL against the tables, so a schema
change is made here and nowhere else. All of them run on the store's read connection (never the writer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..domain.events import Kind
from .store import Store

HELD_SQL = ("CASE state WHEN 'reserved' THEN reserved_usd "
            "WHEN 'unsettled' THEN MAX(reserved_usd - settled_usd, 0) ELSE 0 END")
"""What a ledger row still holds against its budgets: a reservation's remainder until it settles."""

SPEND_COLUMNS = {"product": "product", "task": "task_id", "agent": "actor", "role": "actor", "model": "model",
                 "day": "ts"}
"""The ledger column each `spend_by` grouping reads (role and day are derived from actor and ts above)."""


async def ledger_settled_between(store: Store, start: float, end: float) -> list[tuple[str | None, float, float]]:
    """(product, ts, settled USD) of every ledger row reserved in [start, end]."""
    return [(p, float(ts), float(usd or 0)) for p, ts, usd in await store.query(
        "SELECT product, ts, settled_usd FROM ledger WHERE ts >= ? AND ts <= ?", (start, end))]


async def ledger_grouped(store: Store, by: str) -> list[tuple[Any, ...]]:
    """Per value of `by`'s column and simulated flag: (value, settled, held, calls, input, output, cache write,
    cache read tokens, simulated)."""
    col = SPEND_COLUMNS[by]  # a fixed name from the table above, never caller text
    return await store.query(
        f"SELECT {col}, SUM(settled_usd), SUM({HELD_SQL}), COUNT(*), SUM(input_tokens), SUM(output_tokens), "
        f"SUM(cache_creation_tokens), SUM(cache_read_tokens), simulated FROM ledger GROUP BY {col}, simulated")


async def settled_in_window(store: Store, start: float, end: float, *, simulated: bool, task_id: str | None = None,
                            product: str | None = None) -> float:
    """USD settled in (start, end] in the real or the simulated pool, for one task or product or everything."""
    where, params = ["settled_ts > ?", "settled_ts <= ?", "simulated = ?"], [start, end, int(simulated)]
    if task_id is not None:
        where.append("task_id = ?")
        params.append(task_id)
    elif product is not None:
        where.append("product = ?")
        params.append(product)
    (usd,) = (await store.query(f"SELECT COALESCE(SUM(settled_usd), 0) FROM ledger WHERE {' AND '.join(where)}",
                                tuple(params)))[0]
    return float(usd)


async def reserved_calls(store: Store) -> list[tuple[str, str | None, str | None]]:
    """(call id, task, product) of every model call still only reserved (never settled), oldest first."""
    return [tuple(r) for r in await store.query(  # type: ignore[misc]
        "SELECT call_id, task_id, product FROM ledger WHERE state = 'reserved' ORDER BY ts")]


async def started_agents(store: Store) -> list[tuple[str, str | None, str | None]]:
    """(agent, product, task) of every agent that ever started, the most recently started first."""
    rows = await store.query(
        "SELECT actor, product, task_id, MAX(id) FROM events WHERE kind = ? GROUP BY actor ORDER BY MAX(id) DESC",
        (Kind.AGENT_STARTED.value,))
    return [(actor, product, task_id) for actor, product, task_id, _ in rows]


async def last_teaching_event_id(store: Store, task_id: str) -> int | None:
    """The id of the task's latest event that taught something: a failed verdict, changes requested, a send-back,
    a human's override, a block."""
    rows = await store.query(
        "SELECT MAX(id) FROM events WHERE task_id = ? AND (kind IN (?, ?, ?, ?) OR "
        "(kind = ? AND json_extract(data, '$.outcome') = 'fail'))",
        (task_id, Kind.CHANGES_REQUESTED.value, Kind.SENT_BACK.value, Kind.OVERRIDE.value, Kind.BLOCKED.value,
         Kind.VERDICT.value))
    found = rows[0][0] if rows else None
    return None if found is None else int(found)


async def last_green_verdict(store: Store, run_key: str, gates: Sequence[str]) -> str | None:
    """The data (JSON text) of the newest passing system verdict of one of `gates` recorded for `run_key`."""
    rows = await store.query(
        "SELECT data FROM events WHERE kind = ? AND actor = 'system' "
        "AND json_extract(data, '$.run_key') = ? AND json_extract(data, '$.outcome') = 'pass' "
        f"AND json_extract(data, '$.gate') IN ({', '.join('?' for _ in gates)}) ORDER BY id DESC LIMIT 1",
        (Kind.VERDICT.value, run_key, *gates))
    return rows[0][0] if rows else None


async def events_for_metrics(store: Store, *, after_id: int, data_kinds: Sequence[str],
                             unread_kinds: Sequence[str]) -> list[tuple[Any, ...]]:
    """(id, ts, kind, actor, product, task, data or None) of every event after `after_id` whose kind is not in
    `unread_kinds`, in log order; the data only for `data_kinds` (the rest are counted, never parsed)."""
    with_data, unread = ",".join("?" * len(data_kinds)), ",".join("?" * len(unread_kinds))
    return await store.query(
        f"SELECT id, ts, kind, actor, product, task_id, CASE WHEN kind IN ({with_data}) THEN data END "
        f"FROM events WHERE id > ? AND kind NOT IN ({unread}) ORDER BY id", (*data_kinds, after_id, *unread_kinds))


async def notices_failing(store: Store) -> bool:
    """Whether a notice's last delivery failed (given up, or due again after an error): the header's mark in a
    cockpit that does not run the sender itself (another terminal or browser tab runs the factory)."""
    return bool(await store.query(
        "SELECT 1 FROM outbox WHERE state = 'failed' OR (state = 'pending' AND last_error != '') LIMIT 1"))


async def tasks_with_event_since(store: Store, kind: str, start: float) -> list[str]:
    """The tasks that had an event of `kind` at or after `start`, in the order of their first such event."""
    rows = await store.query("SELECT task_id, MIN(id) FROM events WHERE kind = ? AND ts >= ? AND task_id IS NOT NULL "
                             "GROUP BY task_id ORDER BY MIN(id)", (kind, start))
    return [r[0] for r in rows]


async def spend_since(store: Store, start: float) -> tuple[float, float]:
    """(real, simulated) USD settled by the calls reserved at or after `start`."""
    (real, sim), = await store.query(
        "SELECT COALESCE(SUM(CASE WHEN simulated = 0 THEN settled_usd END), 0), "
        "COALESCE(SUM(CASE WHEN simulated != 0 THEN settled_usd END), 0) FROM ledger WHERE ts >= ?", (start,))
    return float(real), float(sim)
