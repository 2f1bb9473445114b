"""The SQLite schema, versioned with PRAGMA user_version and migrated forward only."""

from __future__ import annotations

# Each entry moves the schema from version i to i+1. Never edit a released entry: append one.
MIGRATIONS: list[str] = [
    # 1: the event log, the task projection, the spend ledger
    """
    CREATE TABLE events (
        id       INTEGER PRIMARY KEY,
        ts       REAL    NOT NULL,
        kind     TEXT    NOT NULL,
        actor    TEXT    NOT NULL,
        product  TEXT,
        task_id  TEXT,
        data     TEXT    NOT NULL
    );
    CREATE INDEX events_task  ON events(task_id, id) WHERE task_id IS NOT NULL;
    CREATE INDEX events_actor ON events(actor, id);
    CREATE INDEX events_kind  ON events(kind, id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

    CREATE TABLE tasks (
        id            TEXT PRIMARY KEY,
        seq           INTEGER NOT NULL,
        product       TEXT NOT NULL,
        state         TEXT NOT NULL,
        last_event_id INTEGER NOT NULL,
        body          TEXT NOT NULL
    );
    CREATE INDEX tasks_product ON tasks(product, seq);

    CREATE TABLE ledger (
        call_id       TEXT PRIMARY KEY,
        ts            REAL NOT NULL,
        task_id       TEXT,
        product       TEXT,
        actor         TEXT NOT NULL,
        model         TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'unsettled')),
        reserved_usd  REAL NOT NULL,
        settled_usd   REAL NOT NULL DEFAULT 0,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
        settled_ts    REAL
    );
    CREATE INDEX ledger_task ON ledger(task_id);
    CREATE INDEX ledger_product ON ledger(product);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
