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
