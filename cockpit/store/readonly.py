"""The store read from outside a running cockpit, read-only and synchronous: `product list`, `doctor`.

Why separate from Store.open: these commands must never create, migrate or lock a store (a missing file stays
missing, a newer schema is reported, not touched), and they run while a cockpit may be writing (WAL readers
never block it). Opened with SQLite's `mode=ro`, so a bug here cannot write either.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path


class UnreadableStore(Exception):
    """The file is not SQLite, or SQLite cannot read it (the message says why)."""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    schema_version: int
    integrity: list[str]  # ["ok"] when SQLite's integrity check found nothing
    events: int | None    # None when the schema is newer than this cockpit (tables it may not know)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def task_counts(path: Path) -> dict[str, dict[str, int]]:
    """{product: {state: count}} from the store, read-only; {} when there is no store (never creates one) or it
    cannot be read."""
    if not path.exists():
        return {}
    try:
        with closing(_connect(path)) as con:
            rows = con.execute("SELECT product, state, COUNT(*) FROM tasks GROUP BY product, state").fetchall()
    except sqlite3.Error:
        return {}
    out: dict[str, dict[str, int]] = {}
    for product, state, n in rows:
        out.setdefault(product, {})[state] = n
    return out


def health(path: Path, *, known_version: int) -> StoreHealth:
    """The schema version, SQLite's integrity check and the number of events (when the schema is one this
    cockpit knows). Raises UnreadableStore."""
    try:
        with closing(_connect(path)) as con:
            (version,) = con.execute("PRAGMA user_version").fetchone()
            integrity = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
            if version > known_version:
                return StoreHealth(version, integrity, None)
            (events,) = con.execute("SELECT COUNT(*) FROM events").fetchone() if version else (0,)
    except sqlite3.Error as e:
        raise UnreadableStore(str(e)) from None
    return StoreHealth(version, integrity, int(events))
