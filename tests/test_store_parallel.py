"""Many processes, one store: ids and rows are assigned under the write lock, so nothing collides or is lost.

The attacks (issue 18): opening a store read the tasks and the highest event id in two reads, so a task another
process committed between them got its id handed out again (two `T9`, one row overwritten); two processes
opening a new file both created the schema ("table events already exists"); two processes remembering at once
took the same lesson id. Each is first shown to land on a copy of the old, unprotected code, then not to land.
The parallel runs fork real processes from one launcher (tests/parallel_cli.py): each runs `cockpit.cli.main`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cockpit.domain import Event, Kind
from cockpit.store import Store, StoreError
from cockpit.store import store as store_module
from cockpit.store.memory import Memory
from cockpit.store.schema import MIGRATIONS, SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).resolve().parent / "parallel_cli.py"

# 40-100 processes at once: seconds on an idle box, minutes on a loaded one; a hang is still caught
pytestmark = pytest.mark.timeout(400)


def created(title: str) -> Event:
    return Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": title})


# --- the old code, unprotected, for the liveness checks -------------------------------------------------------


class UnprotectedLoad(Store):
    """The store as it opened before: the tasks, then (a separate read) the highest event id."""

    async def _load(self) -> None:
        await self._load_tasks()
        (max_id,) = await (await self._w.execute("SELECT COALESCE(MAX(id), 0) FROM events")).fetchone()
        self._next_id = max_id + 1
        self.last_event_id = max_id
        await self._load_ledger()


class UnprotectedMigrate(Store):
    """The store as it migrated before: the schema version read outside the write lock."""

    async def _migrate(self) -> None:
        (version,) = await (await self._w.execute("PRAGMA user_version")).fetchone()
        await asyncio.sleep(0.3)  # the others read the same version meanwhile (as a busy machine makes them do)
        for v in range(version, SCHEMA_VERSION):
            await self._w.execute("BEGIN IMMEDIATE")
            try:
                for stmt in store_module._split_sql(MIGRATIONS[v]):
                    await self._w.execute(stmt)
                await self._w.execute(f"PRAGMA user_version={v + 1}")
                await self._w.execute("COMMIT")
            except BaseException:
                await self._w.execute("ROLLBACK")
                raise


def racing(cls: type[Store], other: Store):
    """`cls`, with another process's task committed between reading the tasks and the rest."""

    class Raced(cls):  # type: ignore[valid-type, misc]
        async def _load_tasks(self, after_id: int = 0) -> None:
            await super()._load_tasks(after_id)
            if after_id == 0:
                await other.append(created("committed by another process meanwhile"))

    return Raced


async def _open_raced(cls: type[Store], db: Path) -> tuple[bool, str | None, int, str]:
    """(whether the raced store read T2's event but not T2, what its add got, task rows, T2's title)."""
    other = await Store.open(db)
    await other.append(created("first"))
    raced = await racing(cls, other).open(db)
    try:
        await other.close()
        torn = raced.last_event_id >= 2 and raced.task("T2") is None  # past T2's event, without T2
        try:
            got = (await raced.append(created("mine"))).task_id
        except StoreError:
            got = None  # the write refused to overwrite the other's row
        con = sqlite3.connect(db)
        (rows,) = con.execute("SELECT COUNT(*) FROM tasks").fetchone()
        (body,) = con.execute("SELECT body FROM tasks WHERE id = 'T2'").fetchone()
        return torn, got, rows, json.loads(body)["title"]
    finally:
        await raced.close()


async def test_a_task_committed_while_the_store_opens_keeps_its_id(tmp_path):
    # unprotected: the store would hand out the other's T2 again; the write, which now inserts a new task's
    # row instead of upserting it, refuses rather than overwrite the other's row
    torn, got, rows, title = await _open_raced(UnprotectedLoad, tmp_path / "a.db")
    assert torn  # the attack lands on the old open: it would hand out T2, taken already
    assert got is None and rows == 2 and title == "committed by another process meanwhile"
    # protected: one snapshot (without T2 and its event), so the write catches up first and takes T3
    torn, got, rows, title = await _open_raced(Store, tmp_path / "b.db")
    assert (torn, got, rows, title) == (False, "T3", 3, "committed by another process meanwhile")


async def test_a_new_store_opened_by_several_processes_at_once(tmp_path):
    async def open_many(cls: type[Store], db: Path) -> list[BaseException | None]:
        got = await asyncio.gather(*(cls.open(db) for _ in range(6)), return_exceptions=True)
        for s in got:
            if isinstance(s, Store):
                await s.close()
        return [g if isinstance(g, BaseException) else None for g in got]

    failed = [e for e in await open_many(UnprotectedMigrate, tmp_path / "a.db") if e is not None]
    assert failed and "already exists" in str(failed[0])  # the attack lands on the old code
    assert await open_many(Store, tmp_path / "b.db") == [None] * 6


async def test_two_processes_remembering_at_once_take_different_lesson_ids(tmp_path):
    async def remember_twice(unprotected: bool) -> list[str]:
        db = tmp_path / f"{unprotected}.db"
        a, b = await Store.open(db), await Store.open(db)
        try:
            ma, mb = Memory(a), Memory(b)
            if unprotected:  # the old way: the id read (MAX + 1) before the write, outside its lock
                async def old_write(mem, kind, actor, data, sql, *, product=None, task_id=None, new_lesson=False):
                    if new_lesson:
                        (top,) = (await mem.store.query("SELECT COALESCE(MAX(id), 0) FROM lessons"))[0]
                        await asyncio.sleep(0.05)  # the other process reads the same MAX meanwhile
                        data = {**data, "lesson_id": top + 1}
                        sql = [(s, tuple(top + 1 if p is store_module.NEW_ID else p for p in ps)) for s, ps in sql]
                    return await mem.store.append(Event(kind=kind, actor=actor, product=product, task_id=task_id,
                                                        data=data), sql=sql)
                ma._write = lambda *a_, **k: old_write(ma, *a_, **k)  # type: ignore[method-assign]
                mb._write = lambda *a_, **k: old_write(mb, *a_, **k)  # type: ignore[method-assign]
            got = await asyncio.gather(
                ma.remember("refunds need a second reviewer read", product="shop", role="builder",
                            source_task="T1", actor="builder-1"),
                mb.remember("invoices round half up to cents", product="shop", role="builder",
                            source_task="T2", actor="builder-2"), return_exceptions=True)
            return [type(g).__name__ if isinstance(g, BaseException) else g.action for g in got]
        finally:
            await b.close()
            await a.close()

    assert "StoreError" in await remember_twice(unprotected=True)  # same id twice: one write fails
    assert await remember_twice(unprotected=False) == ["added", "added"]
    ids = [r[0] for r in sqlite3.connect(tmp_path / "False.db").execute("SELECT id FROM lessons ORDER BY id")]
    assert ids == [1, 2]


# --- 100 real processes ----------------------------------------------------------------------------------------


def _factory(root: Path, extra: str = "") -> Path:
    from factory_kit import write_factory

    return write_factory(root, extra=extra, limits={"max_agents": 1})


def _parallel(tmp_path: Path, argvs: list[list[str]]) -> list[dict]:
    spec = tmp_path / "argv.json"
    spec.write_text(json.dumps(argvs))
    run = subprocess.run([sys.executable, str(LAUNCHER), str(spec)], cwd=REPO, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _assert_all_added(results: list[dict], db: Path, n: int, before: int = 0) -> None:
    bad = [r for r in results if r["rc"] != 0]
    assert not bad, bad[:3]
    ids = [r["out"].strip() for r in results]
    assert len(set(ids)) == n, sorted(ids)
    con = sqlite3.connect(db)
    rows = {r[0] for r in con.execute("SELECT id FROM tasks")}
    assert set(ids) <= rows and len(rows) == n + before
    created = [r[0] for r in con.execute("SELECT task_id FROM events WHERE kind = 'task.created'")]
    assert len(created) == len(set(created)) == n + before  # no id created twice in the log


def test_100_parallel_task_adds_on_a_factory_with_no_store_yet(tmp_path):
    f = _factory(tmp_path / "f")
    db = tmp_path / "f" / "memory" / "cockpit.db"
    assert not db.exists()
    t0 = time.monotonic()
    results = _parallel(tmp_path, [["task", "add", "shop", f"task {i}", "--factory", str(f)] for i in range(100)])
    _assert_all_added(results, db, 100)
    print(f"100 parallel adds, new store: {time.monotonic() - t0:.1f} s")


def test_100_parallel_task_adds_against_a_running_cockpit(tmp_path):
    f = _factory(tmp_path / "f", extra="")
    text = f.read_text().replace('[model]\n', '[model]\nchunk_delay_s = 5\n')  # one slow builder keeps it running
    f.write_text(text)
    db = tmp_path / "f" / "memory" / "cockpit.db"
    first = subprocess.run([sys.executable, "-m", "cockpit", "task", "add", "shop", "keep busy", "--factory", str(f)],
                           cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    cockpit = subprocess.Popen([sys.executable, "-m", "cockpit", "run", "--headless", "--timeout", "120",
                                "--factory", str(f)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # running: it started the first task's builder
            if sqlite3.connect(db).execute("SELECT 1 FROM events WHERE kind = 'task.started'").fetchone():
                break
            assert cockpit.poll() is None, cockpit.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the headless cockpit never started the first task")
        t0 = time.monotonic()
        results = _parallel(tmp_path, [["task", "add", "shop", f"task {i}", "--factory", str(f)] for i in range(100)])
        print(f"100 parallel adds, running cockpit: {time.monotonic() - t0:.1f} s")
        assert cockpit.poll() is None  # it ran throughout
    finally:
        cockpit.send_signal(signal.SIGINT)
        try:
            cockpit.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            cockpit.kill()
            cockpit.communicate()
    _assert_all_added(results, db, 100, before=1)


def test_50_parallel_remembers(tmp_path):
    f = _factory(tmp_path / "f")
    db = tmp_path / "f" / "memory" / "cockpit.db"
    t0 = time.monotonic()
    results = _parallel(tmp_path, [["memory", "remember", f"lesson number {i}: check module{i} before merging",
                                    "--task", f"T{i}", "--product", "shop", "--factory", str(f)]
                                   for i in range(50)])
    print(f"50 parallel remembers: {time.monotonic() - t0:.1f} s")
    bad = [r for r in results if r["rc"] != 0]
    assert not bad, bad[:3]
    said = sorted(int(r["out"].split()[0].lstrip("L")) for r in results)
    assert said == list(range(1, 51))
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, source_task FROM lessons ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(1, 51)) and len({r[1] for r in rows}) == 50
    events = [json.loads(d)["lesson_id"] for (d,) in con.execute("SELECT data FROM events WHERE kind = ?",
                                                                  ("memory.remembered",))]
    assert sorted(events) == list(range(1, 51))
    assert os.path.exists(db)


def test_adds_budget_raises_and_lessons_at_once_on_a_new_store(tmp_path):
    """Every kind of row another process writes, all at once: tasks, budget raises (events the budgets are rebuilt
    from), lessons; nothing lost, every command exit 0, and the store reads back whole."""
    f = _factory(tmp_path / "f")
    f.write_text(f.read_text().replace('name = "shop"\n', 'name = "shop"\nbudget_usd = 5\n'))
    db = tmp_path / "f" / "memory" / "cockpit.db"
    argvs = []
    for i in range(15):
        argvs += [["task", "add", "shop", f"task {i}", "--factory", str(f)],
                  ["budget", "raise", "--product", "shop", "--usd", "1", "-f", str(f)],
                  ["memory", "remember", f"mixed lesson {i}: run tool{i} before module{i}", "--task", f"T{i}",
                   "--factory", str(f)]]
    t0 = time.monotonic()
    results = _parallel(tmp_path, argvs)
    print(f"45 mixed parallel writes: {time.monotonic() - t0:.1f} s")
    bad = [r for r in results if r["rc"] != 0]
    assert not bad, bad[:3]
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM tasks").fetchone() == (15, 15)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM lessons").fetchone() == (15, 15)
    raises = [json.loads(d)["usd"] for (d,) in con.execute("SELECT data FROM events WHERE kind = 'budget.raised'")]
    assert raises == [1.0] * 15

    async def reopened() -> float:
        from cockpit.domain.budget import BudgetLimits, Scope

        s = await Store.open(db, budgets=BudgetLimits(product_usd={"shop": 5.0}))
        try:
            return s.budget.limit((Scope.PRODUCT, "shop"))
        finally:
            await s.close()

    assert asyncio.run(reopened()) == 20.0  # the configured 5 and every one of the 15 raises
