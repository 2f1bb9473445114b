"""The store: real SQLite file, WAL, one writer, domain-validated appends, rebuild after restart."""

import asyncio
import sqlite3

import pytest

from cockpit.domain import Event, Kind, Refused, TaskState, fold
from cockpit.store import Store, StoreError
from cockpit.store.schema import SCHEMA_VERSION


def ev(kind, actor="system", task_id="T1", **data):
    return Event(kind=kind, actor=actor, product="shop", task_id=task_id, data=data)


async def test_appends_get_increasing_ids_and_survive_restart(tmp_path):
    db = tmp_path / "memory" / "cockpit.db"
    s = await Store.open(db)
    created = await s.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": "x"}))
    assert created.task_id == "T1" and created.id == 1
    await s.append(ev(Kind.TASK_STARTED, agent="builder-1"))
    results = await asyncio.gather(*(s.append(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": str(i)}))
                                     for i in range(100)))
    ids = [r.id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 100
    await s.close()

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    s = await Store.open(db)
    assert s.task("T1").state == TaskState.BUILDING
    again = await s.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": "y"}))
    assert again.task_id == "T2" and again.id == 103
    events = await s.events()
    assert [e.id for e in events] == list(range(1, 104))
    # the projection equals a fold of the log
    assert fold(events) == {t.id: t for t in s.tasks()}
    await s.close()


async def test_refused_task_event_is_recorded_and_raised_never_applied(tmp_path):
    s = await Store.open(tmp_path / "c.db")
    await s.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": "x"}))
    with pytest.raises(Refused, match="builder-1 \\(builder\\) may not task.merged"):
        await s.append(ev(Kind.MERGED, actor="builder-1", merged_commit="abc"))
    assert s.task("T1").state == TaskState.QUEUED
    refused = await s.events(kinds=[Kind.REFUSED])
    assert refused[0].data["kind"] == "task.merged" and refused[0].actor == "builder-1"
    await s.close()


async def test_events_table_is_append_only(tmp_path):
    db = tmp_path / "c.db"
    s = await Store.open(db)
    await s.append(Event(kind=Kind.NOTE, actor="system", data={"text": "hello"}))
    await s.close()
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE events SET kind='x'")
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM events")


async def test_subscribers_see_committed_events_in_order(tmp_path):
    s = await Store.open(tmp_path / "c.db")
    sub = s.subscribe()
    for i in range(5):
        s.post(Event(kind=Kind.NOTE, actor="system", data={"i": i}))
    await s.flush()
    got = sub.drain()
    assert [e.data["i"] for e in got] == [0, 1, 2, 3, 4]
    sub.close()
    await s.close()


async def test_corrupt_and_newer_store_files_are_refused_untouched(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 10)
    with pytest.raises(StoreError, match="not a SQLite database"):
        await Store.open(bad)
    assert bad.read_bytes() == b"this is not sqlite" * 10

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as raw:
        raw.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        await Store.open(newer)


async def test_ledger_reserve_and_settle(tmp_path):
    s = await Store.open(tmp_path / "c.db")
    await s.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": "x"}))
    await s.reserve(call_id="c1", task_id="T1", product="shop", actor="builder-1", model="m", usd=0.5)
    rows = await s.query("SELECT state, reserved_usd FROM ledger")
    assert rows == [("reserved", 0.5)]
    await s.settle(call_id="c1", task_id="T1", product="shop", usd=0.123, usage={"input_tokens": 10})
    assert await s.query("SELECT state, settled_usd, input_tokens FROM ledger") == [("settled", 0.123, 10)]
    assert s.task("T1").spend_usd == pytest.approx(0.123)
    assert await s.spend_total("shop") == pytest.approx(0.123)
    await s.close()


async def test_posted_agent_output_is_committed_in_order_with_ids_and_task_events_still_checked(tmp_path):
    """The fast path for posted output keeps every guarantee: ids in order, subscribers fed, data intact, and a
    task event posted among it still goes through the domain."""
    db = tmp_path / "cockpit.db"
    s = await Store.open(db)
    sub = s.subscribe()
    await s.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": "x"}))
    shared = Event(kind=Kind.AGENT_TEXT, actor="builder-1", product="shop", task_id="T1", data={"text": "twice"})
    odd = Event(kind="agent.tool", actor="builder-1", data={"input": {1: "int key", "p": tmp_path}, "x": float("inf")})
    s.post(shared)
    s.post(shared)  # the same object twice: two events, two ids
    s.post(odd)
    # a refused task event on the post path is recorded as a refusal, not applied
    s.post(Event(kind=Kind.MERGED, actor="builder-1", product="shop", task_id="T1", data={"commit": "abc"}))
    for i in range(500):
        s.post(Event(kind=Kind.AGENT_TEXT, actor="builder-2", data={"text": f"line {i}"}))
    await s.flush()
    seen = sub.drain()
    assert [e.id for e in seen] == list(range(1, 506))
    assert seen[1].data == seen[2].data == {"text": "twice"} and seen[1].id != seen[2].id
    assert seen[4].kind == Kind.REFUSED and s.task("T1").state == TaskState.QUEUED
    await s.close()

    s = await Store.open(db)
    events = await s.events()
    assert [e.id for e in events] == list(range(1, 506))
    assert events[3].data == {"input": {"1": "int key", "p": str(tmp_path)}, "x": None}
    assert [e.data["text"] for e in events[5:]] == [f"line {i}" for i in range(500)]
    await s.close()


async def test_a_store_of_an_older_schema_is_migrated_forward_keeping_every_event(tmp_path):
    from cockpit.store.schema import MIGRATIONS
    from cockpit.store.store import _split_sql

    db = tmp_path / "old.db"
    raw = sqlite3.connect(db, isolation_level=None)
    for v, script in enumerate(MIGRATIONS[:2]):  # a store written by the cockpit of schema version 2
        for stmt in _split_sql(script):
            raw.execute(stmt)
        raw.execute(f"PRAGMA user_version={v + 1}")
    raw.executemany("INSERT INTO events(id, ts, kind, actor, product, task_id, data) VALUES (?,?,?,?,?,?,?)",
                    [(i, 1.0 + i, "agent.text", f"builder-{i % 3}", "shop", "T1", '{"text": "x"}') for i in range(1, 301)])
    raw.close()

    s = await Store.open(db)
    assert [e.id for e in await s.events(actor="builder-1", after_id=100)] == list(range(103, 301, 3))
    nxt = await s.append(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": "after"}))
    assert nxt.id == 301
    await s.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        plan = " ".join(r[-1] for r in raw.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM events WHERE actor = ? AND id > ? ORDER BY id", ("builder-1", 5)))
        assert "events_actor" in plan and "TEMP B-TREE" not in plan, plan  # the index still gives id order


async def test_a_statement_that_breaks_a_constraint_fails_alone_not_the_events_batched_with_it(tmp_path):
    """One caller's bad SQL (a bug, or a race with another process) must not take agents' output with it."""
    s = await Store.open(tmp_path / "memory" / "cockpit.db")
    try:
        first = await s.append(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": "before"}))
        for i in range(5):
            s.post(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": f"a{i}"}))
        # the events table is append-only (a trigger aborts an update): this item's statement must fail
        bad = s.submit(Event(kind=Kind.AGENT_TEXT, actor="builder-2", data={"text": "with bad sql"}),
                       [("UPDATE events SET kind = 'x' WHERE id = ?", (first.id,))])
        good = s.submit(Event(kind=Kind.AGENT_TEXT, actor="builder-2", data={"text": "fine"}))
        for i in range(5):
            s.post(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": f"b{i}"}))
        with pytest.raises(StoreError, match="nothing of this batch was recorded"):
            await bad
        assert (await good).data["text"] == "fine"
        await s.flush()
        texts = [e.data["text"] for e in await s.events(kinds=[Kind.AGENT_TEXT])]
        assert texts == ["before", *(f"a{i}" for i in range(5)), "fine", *(f"b{i}" for i in range(5))]
        ids = [e.id for e in await s.events()]
        assert ids == list(range(1, len(ids) + 1))
    finally:
        await s.close()
