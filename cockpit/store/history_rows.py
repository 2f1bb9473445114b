"""Ledger rows written in bulk, for a history made up front (the demo's months of past work).

Why: a made-up history is thousands of settled calls; one INSERT per call through reserve/settle would take
the demo's start from a second to a minute. The rows are plain settled calls, committed with the event that
settles the task's last one (`Store.submit`), so the budgets rebuilt at open see them like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LEDGER_COLUMNS = ("call_id, ts, task_id, product, actor, model, state, reserved_usd, settled_usd, input_tokens, "
                  "output_tokens, cache_creation_tokens, cache_read_tokens, settled_ts")

SettledCall = tuple[str, float, str | None, str | None, str, str, float, float, int, int, int, int]
"""(call id, ts, task, product, actor, model, reserved USD, settled USD, input, output, cache write, cache read
tokens): a call reserved and settled at `ts`."""


def settled_calls(calls: Sequence[SettledCall], *, per_statement: int = 60) -> list[tuple[str, tuple[Any, ...]]]:
    """Multi-row INSERTs of settled calls, `per_statement` rows each (SQLite's parameter limit allows more)."""
    stmts = []
    for i in range(0, len(calls), per_statement):
        chunk = calls[i:i + per_statement]
        values = ",".join(["(?,?,?,?,?,?,'settled',?,?,?,?,?,?,?)"] * len(chunk))
        params: list[Any] = []
        for cid, ts, task, product, actor, model, reserved, settled, *tokens in chunk:
            params += [cid, ts, task, product, actor, model, reserved, settled, *tokens, ts]
        stmts.append((f"INSERT INTO ledger({LEDGER_COLUMNS}) VALUES {values}", tuple(params)))
    return stmts
