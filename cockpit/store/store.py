"""The store: one append-only event log in SQLite (WAL), the only way state changes.

One writer coroutine owns the write connection. Appends queue up and are
committed in batches, one transaction each. Task events pass through the domain
(`cockpit.domain.tasks.apply`) inside the writer, against the projection as it
will be after the events ahead of them in the batch, so validation and append
are one atomic step: nothing can append a task event the domain refuses. A
refused action is itself recorded (`action.refused`) and raised to the caller.

Readers use a second connection; WAL lets them run while the writer commits.
Subscribers get every committed event, in id order, after its commit.

High-volume agent output (`post`) takes a fast path: no future per event, the id
set on the posted event in place (the store owns a posted event), data encoded
with orjson. Everything else (task events, ledger steps) takes the same path it
always did. `bench/store_ingest.py` measures both against raw sqlite3.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from ..domain import budget
from ..domain import tasks as domain
from ..domain.errors import Refused
from ..domain.events import TASK_KINDS, Event, Kind
from ..domain.notices import notices_for
from ..domain.tasks import Task
from ..domain.visible import encodable
from .schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_BATCH = 2000
CHECKPOINT_EVERY_S = 0.5
"""How often the WAL is copied back into the database while events are being written."""
OTHERS_POLL_S = 1.0
"""How often an idle store looks for events another process committed."""
BUSY_TIMEOUT_MS = 60_000
"""How long a connection waits for another process's write lock. Every writer holds it for one short
transaction, but 100 `cockpit task add` started at once on a busy machine queue for it longer than 5 s."""


BALLAST_BYTES = int(os.environ.get("COCKPIT_STORE_RESERVE_BYTES", 16 << 20))
"""Kept beside the database (`<db>-reserve`) while the disk has room, and given up when a write meets a full
disk: that write, and the block that tells the human why, still land instead of stopping the factory
(adversary C-10: a command filled the disk). Made again at the next start if the disk has room. The
environment variable sizes it for a test suite that makes hundreds of factories (16 MB each filled gigabytes
of pytest's kept temp dirs)."""


def _keep_ballast(path: Path, size: int) -> None:
    """Write the reserve file if it is missing or short and the disk has room for it twice over."""
    if size <= 0:
        return
    try:
        if path.exists() and path.stat().st_size >= size:
            return
        st = os.statvfs(path.parent)
        if st.f_bavail * st.f_frsize < 2 * size:
            log.warning("%s: the disk is nearly full; the store keeps no reserve until space is freed", path)
            return
        with open(path, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, size)  # the blocks reserved, nothing written
            except OSError:  # a filesystem without it: write the zeros
                chunk = b"\0" * min(size, 1 << 20)
                for _ in range(-(-size // len(chunk))):
                    f.write(chunk)
    except OSError as e:
        log.warning("%s: no reserve kept (%s)", path, e)
        path.unlink(missing_ok=True)


class StoreError(Exception):
    """The store cannot be used or written; the message names the file and what to do."""


class _NewId:
    """A row id the store assigns inside the write transaction (`NEW_ID` in an append's SQL parameters)."""

    def __repr__(self) -> str:
        return "NEW_ID"


NEW_ID: Any = _NewId()
"""Put this in `append(..., new_id=(table, key))`'s SQL parameters: the store replaces it by `table`'s next id,
read under the write lock (so two processes never take the same one), and sets it as the event's `data[key]`."""


class _Item:
    """One entry of the writer's queue (slots: the ingest path makes one per event)."""

    __slots__ = ("event", "sql", "future", "ledger", "owned", "new_id", "template")

    def __init__(self, event: Event | None, sql: list[tuple[str, tuple[Any, ...]]] | tuple = (),
                 future: asyncio.Future | None = None,
                 ledger: budget.Reservation | budget.Settlement | None = None, owned: bool = False,
                 new_id: tuple[str, str] | None = None) -> None:
        self.event = event
        self.sql = sql
        self.future = future
        # a ledger change, checked against the budgets in the same batch step that commits it
        self.ledger = ledger
        self.owned = owned  # posted: the store may set the event's id in place
        self.new_id = new_id  # (table, data key): a row id to assign under the write lock
        self.template = (event, sql)  # as submitted, NEW_ID still in it (a retried write assigns again)


@dataclass
class _Batch:
    """A batch checked and turned into rows, waiting to be written (or being written)."""

    next_task: int
    txn: budget.BudgetTxn
    first_id: int = 0  # the id of the batch's first event
    next_id: int = 0  # the first id after the batch
    foreign: list[Event] = field(default_factory=list)  # what another process committed just before it
    outage: int | None = None  # the model outage as it stands after the batch (Store._outage)
    pending: dict[str, Task] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    sql: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    # per item: the item, its event as recorded (None for a flush), the refusal if refused, its id
    results: list[tuple[_Item, Event | None, Exception | None, int]] = field(default_factory=list)


def _is_fast(it: _Item) -> bool:
    """Posted agent output, or a bare flush: nothing in it needs the committed state to be checked."""
    ev = it.event
    if ev is None:
        return not it.sql
    return (it.owned and it.ledger is None and ev.kind not in TASK_KINDS
            and ev.kind not in (Kind.BUDGET_RAISED, Kind.MODEL_UNAVAILABLE))


class Subscription:
    """A queue of committed events; close it when done so the store stops feeding it."""

    def __init__(self, store: "Store"):
        self._store = store
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def get(self) -> Event:
        return await self.queue.get()

    def drain(self) -> list[Event]:
        out: list[Event] = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    def close(self) -> None:
        self._store._subs.discard(self)


def _row_to_event(row: Iterable[Any]) -> Event:
    id_, ts, kind, actor, product, task_id, data = row
    return Event(id=id_, ts=ts, kind=kind, actor=actor, product=product, task_id=task_id, data=json.loads(data))


class Store:
    """Open with `await Store.open(path)`; always `await store.close()`."""

    def __init__(self, path: Path):
        self.path = path
        self._w: aiosqlite.Connection | None = None
        self._r: aiosqlite.Connection | None = None
        self._queue: deque[_Item | None] = deque()  # the writer's input, woken by _wake
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._checkpointer: asyncio.Task | None = None
        self._c: aiosqlite.Connection | None = None  # checkpoints only
        self._tasks: dict[str, Task] = {}
        self._task_seq: dict[str, int] = {}
        self._next_id = 1
        self._next_task = 1
        self._subs: set[Subscription] = set()
        self._closed = False
        self.last_event_id = 0
        # the model outage under way: the id of its first model.unavailable event, None once a call succeeded
        self._outage: int | None = None
        # [notify] landings: a merge is a notice too (set by the factory that runs; off: only what needs you)
        self.notify_landings = False
        self.budget = budget.BudgetBook()  # running totals per budget; written by the writer only

    # --- lifecycle ---------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, *, budgets: budget.BudgetLimits | None = None) -> "Store":
        """Open (creating if needed); `budgets` are the configured limits every reservation is checked against."""
        store = cls(Path(path))
        if budgets is not None:
            store.set_budget_limits(budgets)
        await store._open()
        return store

    async def _open(self) -> None:
        p = self.path
        if p.exists() and p.stat().st_size > 0:
            with open(p, "rb") as f:
                if f.read(16) != _SQLITE_MAGIC:
                    raise StoreError(
                        f"{p}: not a SQLite database (corrupt or another file). Move it aside and "
                        "start again; nothing was written to it."
                    )
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(_keep_ballast, self.ballast, BALLAST_BYTES)
            await self._connect_writer()
            self._c = await aiosqlite.connect(p, isolation_level=None)
            await self._c.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._r = await aiosqlite.connect(p, isolation_level=None)
            await self._r.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await self._r.execute("PRAGMA query_only=ON")
            await self._load()
        except sqlite3.DatabaseError as e:
            await self._close_connections()
            raise StoreError(f"{p}: cannot open the store ({e}). Check the file, or move it aside.") from e
        except StoreError:
            await self._close_connections()
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")
        self._watcher = asyncio.create_task(self._watch_others(), name="store-watch-others")
        self._checkpointer = asyncio.create_task(self._checkpoints(), name="store-checkpoints")

    async def _connect_writer(self) -> None:
        """The write connection, in WAL mode, the schema migrated. Several processes opening a new file at once
        can be told 'database is locked' without SQLite waiting its busy timeout (switching the file to WAL, a
        lock it will not wait for): that is retried, with a growing pause, for as long as the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.02
        while True:
            self._w = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                # the wait first: switching a new file to WAL takes a lock another process may hold
                await self._w.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                await self._w.execute("PRAGMA journal_mode=WAL")
                await self._w.execute("PRAGMA synchronous=NORMAL")
                # The writer never checkpoints: a commit that crossed the WAL's threshold used to copy it back into
                # the database (and fsync) before the next batch could start: with 4 MB that cost ingest ~20%,
                # with 40 MB it held agent output back ~100 ms (event -> screen p99 110 -> 177 ms). `_checkpoints`
                # does it on a connection (and a thread) of its own, PASSIVE: it never blocks the writer.
                await self._w.execute("PRAGMA wal_autocheckpoint=0")
                await self._migrate()
                return
            except sqlite3.OperationalError as e:
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                    raise
                await self._w.close()
                self._w = None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)

    async def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file now (PASSIVE: the writer goes on meanwhile)."""
        if self._c is not None:
            await self._c.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _checkpoints(self) -> None:
        """Copy the WAL back into the database, beside the writer: PASSIVE, on the checkpoint connection."""
        done = self.last_event_id
        while not self._closed:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            if self._closed or self._c is None or self.last_event_id == done:
                continue
            done = self.last_event_id
            try:
                await self._c.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:  # busy, or the disk: the WAL keeps everything, try again later
                log.warning("%s: checkpoint failed (%s); will retry", self.path, e)

    async def _watch_others(self) -> None:
        """While this process writes nothing, notice what another one commits (a task added from a shell):
        a bare flush makes the writer catch up (see `_write`), and the subscribers hear of it."""
        while not self._closed:
            await asyncio.sleep(OTHERS_POLL_S)
            if self._closed or self._queue or self._r is None:
                continue
            try:
                async with self._r.execute("SELECT MAX(id) FROM events") as cur:
                    (max_id,) = await cur.fetchone()  # type: ignore[misc]
            except (sqlite3.Error, ValueError):  # busy, or closing under us: look again next time
                continue
            if (max_id or 0) >= self._next_id and not self._queue and not self._closed:
                self._put(_Item(None))

    def set_budget_limits(self, limits: budget.BudgetLimits) -> None:
        """The configured limits (factory.toml) every reservation is checked against from now on."""
        self.budget.limits = limits

    async def _migrate(self) -> None:
        """Bring the schema up to date, under the write lock: the version is read inside the transaction
        that migrates, so two processes opening a new file at once never both create the tables."""
        assert self._w is not None
        while True:
            await self._w.execute("BEGIN IMMEDIATE")
            try:
                (version,) = await (await self._w.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: schema version {version} is newer than this cockpit understands "
                        f"({SCHEMA_VERSION}). Upgrade cockpit; the file was not touched."
                    )
                if version == SCHEMA_VERSION:
                    await self._w.execute("COMMIT")
                    return
                for stmt in _split_sql(MIGRATIONS[version]):
                    await self._w.execute(stmt)
                await self._w.execute(f"PRAGMA user_version={version + 1}")
                await self._w.execute("COMMIT")
            except BaseException:
                await self._w.execute("ROLLBACK")
                raise

    async def _load(self) -> None:
        """Everything in memory from one snapshot (one read transaction): read in separate steps, another
        process could commit a task between the tasks and the highest event id, and this store would then
        hand out that task's id again."""
        assert self._w is not None
        await self._w.execute("BEGIN")
        try:
            (max_id,) = await (await self._w.execute("SELECT COALESCE(MAX(id), 0) FROM events")).fetchone()  # type: ignore[misc]
            await self._load_tasks()
            self._next_id = max_id + 1
            self.last_event_id = max_id
            # budgets: every ledger row counts (unsettled and orphaned reservations too), and every raise
            await self._load_ledger()
            async with self._w.execute("SELECT actor, task_id, data FROM events WHERE kind = ?",
                                       (Kind.BUDGET_RAISED.value,)) as cur:
                async for actor, task_id, data in cur:
                    self.budget.load_raise(actor, task_id, json.loads(data))
            # an outage under way when the last process stopped goes on (the same notice key): its first
            # model.unavailable after the last model call that succeeded (both by the kind index)
            async with self._w.execute(
                    "SELECT MIN(id) FROM events WHERE kind = ? AND id > "
                    "(SELECT COALESCE(MAX(id), 0) FROM events WHERE kind = ?)",
                    (Kind.MODEL_UNAVAILABLE.value, Kind.MODEL_CALL.value)) as cur:
                (self._outage,) = await cur.fetchone()  # type: ignore[misc]
        finally:
            await self._w.execute("COMMIT")

    async def _load_tasks(self, after_id: int = 0) -> None:
        """The projection rows changed after event `after_id` (all of them at open), into memory."""
        assert self._w is not None
        async with self._w.execute("SELECT id, seq, body FROM tasks WHERE last_event_id > ?", (after_id,)) as cur:
            async for id_, seq, body in cur:
                self._tasks[id_] = Task.model_validate_json(body)
                self._task_seq[id_] = seq
        self._next_task = max(self._next_task, max(self._task_seq.values(), default=0) + 1)

    async def _load_ledger(self, call_ids: list[str] | None = None) -> None:
        """Ledger rows (all, or these calls) into the budget book, each replacing what the book held for it."""
        assert self._w is not None
        q = "SELECT call_id, ts, task_id, product, state, reserved_usd, settled_usd, simulated FROM ledger"
        chunks: list[list[str] | None] = [None] if call_ids is None else [
            call_ids[i:i + 500] for i in range(0, len(call_ids), 500)]
        for chunk in chunks:
            where = "" if chunk is None else f" WHERE call_id IN ({','.join('?' * len(chunk))})"
            async with self._w.execute(q + where, chunk or ()) as cur:
                async for call_id, ts, task_id, product, state, reserved, settled, simulated in cur:
                    self.budget.reload_row(call_id=call_id, ts=ts, task_id=task_id, product=product, state=state,
                                           reserved_usd=reserved, settled_usd=settled, simulated=bool(simulated))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._watcher, self._checkpointer):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if self._writer is not None:
            self._put(None)
            try:
                await self._writer
            except Exception:  # already reported to the callers of the failed batch
                log.exception("store writer ended with an error")
        await self._close_connections()

    async def _close_connections(self) -> None:
        for conn in (self._r, self._c, self._w):  # the writer last: closing it checkpoints what is left
            if conn is not None:
                try:
                    await conn.close()
                except Exception:
                    pass
        self._r = self._c = self._w = None

    # --- writing -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._writer is None:
            raise StoreError(f"{self.path}: the store is closed")
        if self._writer.done():
            raise StoreError(f"{self.path}: the store writer stopped; restart the cockpit")

    async def append(self, event: Event, sql: list[tuple[str, tuple[Any, ...]]] | None = None, *,
                     new_id: tuple[str, str] | None = None) -> Event:
        """Commit one event (and optional statements in the same transaction); return it with its id.

        `new_id=(table, key)`: every `NEW_ID` in `sql`'s parameters becomes `table`'s next row id, assigned
        inside the write transaction, and the returned event's `data[key]` says which.

        Raises Refused if the domain refuses it (the refusal is recorded), StoreError if
        the write failed (nothing of that batch was committed).
        """
        return await self.submit(event, sql, new_id=new_id)

    def submit(self, event: Event | None, sql: list[tuple[str, tuple[Any, ...]]] | None = None, *,
               new_id: tuple[str, str] | None = None) -> asyncio.Future:
        """Queue without waiting; the returned future resolves after the commit."""
        self._check_open()
        if new_id is not None and event is None:
            raise ValueError("new_id needs an event to record the id in")
        fut = asyncio.get_running_loop().create_future()
        self._put(_Item(event=event, sql=list(sql or []), future=fut, new_id=new_id))
        return fut

    def post(self, event: Event) -> None:
        """Fire and forget (high-volume agent output); errors are logged, never raised.

        The store takes the event over: its `id` is set in place when it is committed (an event
        posted twice is committed twice, the second time as a copy)."""
        if self._closed or self._writer is None or self._writer.done():
            self._check_open()  # raises, saying why
        self._queue.append(_Item(event, (), None, None, True))
        if not self._wake.is_set():
            self._wake.set()

    def _put(self, item: _Item | None) -> None:
        self._queue.append(item)
        if not self._wake.is_set():
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self.submit(None)

    async def _write_loop(self) -> None:
        """Take batches off the queue and commit them, in order, one transaction each.

        (Preparing the next batch while SQLite writes the last one was tried: the sqlite3 module takes the
        GIL back for every row it binds, so the two threads only queued for it and ingest got slower.)"""
        queue = self._queue
        stop = False
        while True:
            batch: list[_Item] = []
            while queue and not stop and len(batch) < _MAX_BATCH:
                nxt = queue.popleft()
                if nxt is None:
                    stop = True
                else:
                    batch.append(nxt)
            if batch:
                prep = self._prepare(batch, self._next_id)
                await self._land(prep, asyncio.ensure_future(self._write(prep)), isolate=len(batch) > 1)
            if stop:
                return
            if not queue:
                self._wake.clear()
                await self._wake.wait()

    def _prepare(self, batch: list[_Item], next_id: int) -> "_Batch":
        """Check every event of the batch (task events through the domain, ledger steps against the budgets)
        against the state as it will be after the events ahead of it, and build the rows to write."""
        b = _Batch(next_task=self._next_task, txn=self.budget.begin(), first_id=next_id, outage=self._outage)
        pending, rows, results = b.pending, b.rows, b.results
        for it in batch:
            ev = it.event
            if ev is None:
                b.sql.extend(it.sql)
                results.append((it, None, None, 0))
                continue
            if _is_fast(it):
                # the fast path: agent output (text, tool calls, model calls) needs no domain check
                if ev.kind == Kind.MODEL_CALL:
                    b.outage = None  # the model answered: an outage is over
                rows.append((next_id, ev.ts, ev.kind, ev.actor, ev.product, ev.task_id, _dumps(ev.data)))
                results.append((it, ev, None, next_id))
                next_id += 1
                continue
            err: Exception | None = None
            if not _encodable_event(ev, it.sql):  # a lone surrogate would fail the whole batch's write
                ev = ev.model_copy(update={"data": encodable(ev.data), "actor": encodable(ev.actor),
                                           "product": encodable(ev.product), "task_id": encodable(ev.task_id)})
                it.sql = [(stmt, tuple(encodable(p) for p in params)) for stmt, params in it.sql]
            try:
                step, ev = self._budget_step(b.txn, it, ev, pending)
                ev = _mark_outage(b, ev, next_id)
                if ev.is_task_event:
                    if ev.kind == Kind.TASK_CREATED and ev.task_id is None:
                        ev = ev.model_copy(update={"task_id": f"T{b.next_task}"})
                        b.seqs[ev.task_id] = b.next_task  # type: ignore[index]
                        b.next_task += 1
                    ev = ev.model_copy(update={"id": next_id})
                    cur = pending.get(ev.task_id) or self._tasks.get(ev.task_id or "")  # type: ignore[arg-type]
                    if cur is None:
                        if ev.kind == Kind.TASK_CREATED and ev.task_id in self._tasks:
                            raise Refused(f"task {ev.task_id} exists already")
                        new = domain.create(ev)
                        b.seqs.setdefault(new.id, _seq_of(new.id, b.next_task))
                    else:
                        new = domain.apply(cur, ev)
                    pending[new.id] = new
                else:
                    ev = ev.model_copy(update={"id": next_id})
                if step is not None:
                    b.txn.apply(step)
            except Refused as r:
                err = r
                ev = Event(
                    id=next_id, kind=Kind.REFUSED, actor=ev.actor, product=ev.product, task_id=ev.task_id,
                    data={"kind": ev.kind, "reason": r.reason, "data": _jsonable(ev.data),
                          **({"budget": r.figures()} if isinstance(r, budget.BudgetExceeded) else {})},
                )
            rows.append((ev.id, ev.ts, ev.kind, ev.actor, ev.product, ev.task_id, _dumps(ev.data)))
            b.sql.extend(it.sql if err is None else [])
            if err is None:
                b.sql.extend(_outbox_rows(ev, self.notify_landings))
            results.append((it, ev, err, next_id))
            next_id += 1
        b.next_id = next_id
        return b

    async def _write(self, b: "_Batch") -> "_Batch":
        """One transaction: the events, the tasks' projection rows and the batch's own statements.

        Another process may write the same file (`cockpit task add` in a second terminal): once this one holds
        the write lock, it catches up with whatever was committed since it last looked and checks the batch
        again on top of it (new ids, the other's tasks and budget changes). Returns the batch as written."""
        assert self._w is not None
        try:
            await self._w.execute("BEGIN IMMEDIATE")
            async with self._w.execute("SELECT MAX(id) FROM events") as cur:
                (max_id,) = await cur.fetchone()  # type: ignore[misc]
            foreign: list[Event] | None = None
            if (max_id or 0) >= b.first_id:
                foreign = await self._catch_up(max_id)
            if await self._assign_new_ids([r[0] for r in b.results]) or foreign is not None:
                b = self._prepare([r[0] for r in b.results], self._next_id)
                b.foreign = foreign or []
            if b.rows:
                await self._w.executemany(
                    "INSERT INTO events(id, ts, kind, actor, product, task_id, data) VALUES (?,?,?,?,?,?,?)", b.rows
                )
            if b.pending:
                rows = [(t.id, b.seqs.get(t.id, self._task_seq.get(t.id, 0)), t.product, t.state.value,
                         t.last_event_id, t.model_dump_json()) for t in b.pending.values()]
                # a task created in this batch is a new row: if another process has it, the write fails
                # (and nothing of it is recorded) rather than overwrite theirs
                created = [r for r in rows if r[0] in b.seqs and r[0] not in self._tasks]
                if created:
                    await self._w.executemany(
                        "INSERT INTO tasks(id, seq, product, state, last_event_id, body) VALUES (?,?,?,?,?,?)", created)
                changed = [r for r in rows if not (r[0] in b.seqs and r[0] not in self._tasks)]
                if changed:
                    # a row only moves forward: never back to an older event than the one it holds
                    await self._w.executemany(
                        "INSERT INTO tasks(id, seq, product, state, last_event_id, body) VALUES (?,?,?,?,?,?) "
                        "ON CONFLICT(id) DO UPDATE SET state=excluded.state, last_event_id=excluded.last_event_id, "
                        "body=excluded.body WHERE excluded.last_event_id > tasks.last_event_id", changed)
            for stmt, params in b.sql:
                await self._w.execute(stmt, params)
            await self._w.execute("COMMIT")
            return b
        except Exception:
            try:
                await self._w.execute("ROLLBACK")
            except Exception:
                pass
            raise

    async def _assign_new_ids(self, items: list[_Item]) -> bool:
        """Give each item that asked for one (`new_id`) its table's next row id, read inside the write
        transaction: into its SQL (for NEW_ID) and its event's data. False if no item asked."""
        assert self._w is not None
        asking = [it for it in items if it.new_id is not None]
        if not asking:
            return False
        nxt: dict[str, int] = {}
        for it in asking:
            table, key = it.new_id  # type: ignore[misc]
            if table not in nxt:
                if not table.isidentifier():
                    raise ValueError(f"not a table name: {table!r}")
                async with self._w.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}") as cur:
                    (top,) = await cur.fetchone()  # type: ignore[misc]
                nxt[table] = int(top) + 1
            n = nxt[table]
            nxt[table] = n + 1
            ev, sql = it.template
            assert ev is not None
            it.event = ev.model_copy(update={"data": {**ev.data, key: n}})
            it.sql = [(stmt, tuple(n if p is NEW_ID else p for p in params)) for stmt, params in sql]
        return True

    async def _catch_up(self, max_id: int) -> list[Event]:
        """What another process committed after our last event (ids up to `max_id`), read inside our write
        transaction: into the projection, the budgets and the id counters. Returns those events, for the
        subscribers (the screen, the orchestrator: a task added from a shell shows and starts)."""
        assert self._w is not None
        known = self._next_id - 1
        async with self._w.execute("SELECT id, ts, kind, actor, product, task_id, data FROM events WHERE id > ? "
                                   "ORDER BY id", (known,)) as cur:
            foreign = [_row_to_event(r) for r in await cur.fetchall()]
        await self._load_tasks(after_id=known)
        for e in foreign:
            if e.kind == Kind.BUDGET_RAISED:
                self.budget.load_raise(e.actor, e.task_id, e.data)
            elif e.kind == Kind.MODEL_CALL:
                self._outage = None
            elif e.kind == Kind.MODEL_UNAVAILABLE and e.data.get("outage"):
                self._outage = int(e.data["outage"])
        await self._load_ledger(sorted({str(e.data["call_id"]) for e in foreign
                                        if e.kind.startswith("spend.") and e.data.get("call_id")}))
        self._next_id = max_id + 1
        self.last_event_id = max_id
        return foreign

    async def _land(self, b: "_Batch", write: asyncio.Future, *, isolate: bool = False) -> bool:
        """Wait for a batch's transaction; then apply it to the in-memory state, answer its callers and feed
        the subscribers, or, if it failed, tell its callers that nothing of it was recorded.

        `isolate`: if one statement of the batch broke a constraint (a caller's SQL, not the disk), the
        others are not its hostages: each item is written again in a transaction of its own, and only the
        faulty one fails."""
        try:
            b = await write
        except sqlite3.IntegrityError as e:
            if not isolate:
                return self._fail(b, e)
            items = [r[0] for r in b.results]
            log.warning("%s: a batch of %d broke a constraint (%s); writing its items one by one", self.path,
                        len(items), e)
            ok = True
            for it in items:
                one = self._prepare([it], self._next_id)
                ok = await self._land(one, asyncio.ensure_future(self._write(one))) and ok
            return ok
        except Exception as e:
            if "full" in str(e) and self._give_up_ballast():  # the disk is full: the reserve makes room for it
                again = self._prepare([r[0] for r in b.results], self._next_id)
                return await self._land(again, asyncio.ensure_future(self._write(again)), isolate=isolate)
            return self._fail(b, e)
        self._landed(b)
        return True

    @property
    def ballast(self) -> Path:
        return self.path.with_name(self.path.name + "-reserve")  # ignored like the WAL (*.db-*)

    def _give_up_ballast(self) -> bool:
        """Remove the reserve file (once): True if there was one to give."""
        try:
            self.ballast.unlink()
        except OSError:
            return False
        log.warning("%s: the disk is full; the store gave up its %d MB reserve so its writes land. Free some disk "
                    "space, then restart the cockpit (the reserve is made again).", self.path, BALLAST_BYTES >> 20)
        return True

    def _fail(self, b: "_Batch", e: BaseException) -> bool:
        """Nothing of `b` was recorded: its callers hear why; posted output that is lost is logged."""
        fix = " Free some disk space, then restart the cockpit." if "full" in str(e) else ""
        failure = StoreError(f"{self.path}: write failed ({e}); nothing of this batch was recorded.{fix}")
        lost = 0
        for it, _, _, _ in b.results:
            if it.future is not None and not it.future.done():
                it.future.set_exception(failure)
            elif it.owned:
                lost += 1
        if lost:
            log.warning("%d posted events not recorded: %s", lost, failure)
        return False

    def _landed(self, b: "_Batch") -> None:
        """`b` is committed: the in-memory state follows, its callers get their events, the subscribers too."""
        self._next_id, self._next_task = b.next_id, b.next_task
        self._outage = b.outage
        b.txn.commit()
        self._tasks.update(b.pending)
        self._task_seq.update(b.seqs)
        if b.rows:
            self.last_event_id = b.next_id - 1
        subs = list(self._subs)
        for ev in b.foreign:
            for sub in subs:
                sub.queue.put_nowait(ev)
        for it, ev, err, eid in b.results:
            if ev is not None and ev.id != eid:  # a posted event: the store owns it, its id is set in place
                if ev.id is not None:  # the same object posted twice: the second is a copy
                    ev = ev.model_copy(update={"id": eid})
                else:
                    ev.__dict__["id"] = eid
            if it.future is not None and not it.future.done():
                if err is not None:
                    it.future.set_exception(err)
                else:
                    it.future.set_result(ev)
            if ev is not None:
                for sub in subs:
                    sub.queue.put_nowait(ev)

    def _budget_step(self, txn: budget.BudgetTxn, it: _Item, ev: Event,
                     pending: dict[str, Task]) -> tuple[budget.Step | None, Event]:
        """Check a ledger change against the budgets as they stand after everything ahead of it."""
        led = it.ledger
        if isinstance(led, budget.Reservation):
            t = (pending.get(led.task_id) or self._tasks.get(led.task_id)) if led.task_id else None
            return txn.prepare_reserve(led, t.budget_usd if t is not None else None), ev
        if isinstance(led, budget.Settlement):
            hold = txn._hold(led.call_id)
            simulated = hold is not None and any(budget.is_simulated(k) for k in hold.scopes)
            step = txn.prepare_settle(led)
            crossed = _budget_crossings(txn, step)
            # the task's spend grows by what this settlement adds (all of it, unless reconciling); a simulated
            # call's is marked, so the task keeps it apart from real spend; a budget it takes past 80 % / 100 %
            # is named in the event, which makes its notice (cockpit.domain.notices) in the same transaction
            return step, ev.model_copy(update={"data": {**ev.data, "usd": round(step.spend_delta_usd, 9),
                                                        "call_usd": led.usd,
                                                        **({"simulated": True} if simulated else {}),
                                                        **({"budget_crossed": crossed} if crossed else {})}})
        if ev.kind == Kind.BUDGET_RAISED:
            return txn.prepare_raise(ev.actor, ev.task_id, ev.data), ev
        return None, ev

    # --- reading -----------------------------------------------------------------

    def task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def tasks(self, product: str | None = None) -> list[Task]:
        out = [t for t in self._tasks.values() if product is None or t.product == product]
        return sorted(out, key=lambda t: self._task_seq.get(t.id, 0))

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subs.add(sub)
        return sub

    async def events(
        self,
        *,
        after_id: int = 0,
        task_id: str | None = None,
        actor: str | None = None,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Event]:
        assert self._r is not None
        where, params = ["id > ?"], [after_id]
        if task_id is not None:
            where.append("task_id = ?")
            params.append(task_id)  # type: ignore[arg-type]
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)  # type: ignore[arg-type]
        if kinds is not None:
            ks = list(kinds)
            where.append(f"kind IN ({','.join('?' * len(ks))})")
            params.extend(ks)  # type: ignore[arg-type]
        q = f"SELECT id, ts, kind, actor, product, task_id, data FROM events WHERE {' AND '.join(where)}"
        q += " ORDER BY id DESC" if newest_first else " ORDER BY id"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        async with self._r.execute(q, params) as cur:
            rows = await cur.fetchall()
        return [_row_to_event(r) for r in rows]

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read-only SQL on the read connection (projections, ledger sums)."""
        assert self._r is not None
        async with self._r.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # --- the spend ledger --------------------------------------------------------

    async def reserve(self, *, call_id: str, task_id: str | None, product: str | None, actor: str,
                      model: str, usd: float, simulated: bool = False) -> None:
        """Hold `usd` against every budget the call falls under, before the call is made.

        `simulated`: the offline scripted model answers it; it counts in the budgets' simulated pool.

        Checked and recorded in one writer step: raises budget.BudgetExceeded (the
        refusal is recorded, no ledger row is written) if any budget would pass its limit.
        """
        res = budget.Reservation(call_id=call_id, task_id=task_id, product=product, actor=actor, model=model,
                                 usd=usd, ts=time.time(), simulated=simulated)
        ev = Event(kind=Kind.SPEND_RESERVED, actor="system", product=product, task_id=task_id,
                   data={"call_id": call_id, "agent": actor, "model": model, "usd": usd,
                         **({"simulated": True} if simulated else {})})
        sql = [("INSERT INTO ledger(call_id, ts, task_id, product, actor, model, state, reserved_usd, simulated) "
                "VALUES (?,?,?,?,?,?, 'reserved', ?, ?)",
                (call_id, res.ts, task_id, product, actor, model, usd, int(simulated)))]
        await self._submit_ledger(ev, sql, res)

    async def settle(self, *, call_id: str, task_id: str | None, product: str | None, usd: float,
                     usage: dict[str, int], complete: bool = True) -> None:
        """Replace a reservation by the real cost; `complete=False` keeps the rest held ('unsettled')."""
        state = "settled" if complete else "unsettled"
        ev = Event(kind=Kind.SPEND if task_id else Kind.SPEND_UNTASKED, actor="system", product=product,
                   task_id=task_id, data={"call_id": call_id, "usd": usd, "usage": usage, "state": state})
        sql = [("UPDATE ledger SET state=?, settled_usd=?, input_tokens=?, output_tokens=?, "
                "cache_creation_tokens=?, cache_read_tokens=?, settled_ts=? WHERE call_id=?",
                (state, usd, usage.get("input_tokens", 0), usage.get("output_tokens", 0),
                 usage.get("cache_creation_input_tokens", 0), usage.get("cache_read_input_tokens", 0),
                 time.time(), call_id))]
        await self._submit_ledger(ev, sql, budget.Settlement(call_id=call_id, usd=usd, complete=complete))

    async def reconcile(self, call_id: str, *, usd: float | None = None, actor: str = "system") -> None:
        """Close an unsettled (or orphaned) call: its cost becomes `usd` (default: what was received), the rest is freed."""
        rows = await self.query("SELECT task_id, product, state, settled_usd FROM ledger WHERE call_id = ?", (call_id,))
        if not rows or rows[0][2] == "settled":
            raise Refused(f"no unsettled call {call_id!r} to reconcile")
        task_id, product, _, settled = rows[0]
        usd = float(settled) if usd is None else usd
        ev = Event(kind=Kind.SPEND if task_id else Kind.SPEND_UNTASKED, actor="system", product=product,
                   task_id=task_id, data={"call_id": call_id, "usd": usd, "state": "settled", "reconciled_by": actor})
        sql = [("UPDATE ledger SET state='settled', settled_usd=?, settled_ts=? WHERE call_id=?",
                (usd, time.time(), call_id))]
        await self._submit_ledger(ev, sql, budget.Settlement(call_id=call_id, usd=usd, reconcile=True))

    async def _submit_ledger(self, ev: Event, sql: list[tuple[str, tuple[Any, ...]]],
                             ledger: budget.Reservation | budget.Settlement) -> Event:
        self._check_open()
        fut = asyncio.get_running_loop().create_future()
        self._put(_Item(event=ev, sql=sql, future=fut, ledger=ledger))
        return await fut

    async def spend_total(self, product: str | None = None, *, simulated: bool = False) -> float:
        """Real spend (or, `simulated`, the offline scripted model's), never the two summed."""
        q = "SELECT COALESCE(SUM(settled_usd), 0) FROM ledger WHERE simulated = ?"
        params: tuple[Any, ...] = (int(simulated),)
        if product is not None:
            q += " AND product = ?"
            params = (int(simulated), product)
        (total,) = (await self.query(q, params))[0]
        return float(total)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (triggers keep their inner semicolons)."""
    out, buf = [], []
    depth = 0
    for line in script.splitlines():
        s = line.strip()
        if not s:
            continue
        buf.append(line)
        up = s.upper()
        if up.startswith("CREATE TRIGGER"):
            depth += 1
        if depth and up.endswith("END;"):
            depth -= 1
        if not depth and s.endswith(";"):
            out.append("\n".join(buf))
            buf = []
    if buf:
        out.append("\n".join(buf))
    return out


def _budget_crossings(txn: budget.BudgetTxn, step: budget.Step) -> list[dict[str, Any]]:
    """The real product/day/factory budgets a settlement takes past a notice threshold (a task's own budget
    blocks the task, which is its notice)."""
    out = []
    for key, d_settled, _ in step.deltas:
        if d_settled <= 0 or budget.is_simulated(key) or key[0] == budget.Scope.TASK:
            continue
        limit = txn.limit(key, None)
        if limit is None:
            continue
        before = (txn.totals.get(key) or txn.book.totals.get(key, budget.Totals())).settled
        for pct in budget.thresholds_crossed(before, before + d_settled, budget.nano(limit)):
            out.append({"scope": key[0].value, "key": key[1], "pct": pct,
                        "spent_usd": round(budget.usd_of(before + d_settled), 6), "limit_usd": limit})
    return out


def _mark_outage(b: "_Batch", ev: Event, event_id: int) -> Event:
    """A model.unavailable names its outage (the first of the run, or this one), so every failure of one outage
    has one notice key; a task blocked by it names it too, and is covered by that notice (cockpit.domain.notices)."""
    if ev.kind == Kind.MODEL_CALL:
        b.outage = None
    elif ev.kind == Kind.MODEL_UNAVAILABLE:
        b.outage = b.outage or event_id
        return ev.model_copy(update={"data": {**ev.data, "outage": b.outage}})
    elif ev.kind == Kind.BLOCKED and b.outage and "model unavailable" in (ev.data.get("reasons") or []):
        return ev.model_copy(update={"data": {**ev.data, "outage": b.outage}})
    return ev


def _outbox_rows(ev: Event, landings: bool = False) -> list[tuple[str, tuple[Any, ...]]]:
    """The outbox rows an event produces (cockpit.domain.notices), for the transaction that records it."""
    return [("INSERT OR IGNORE INTO outbox(key, event_id, product, task_id, body, created_ts) VALUES (?,?,?,?,?,?)",
             (n.key, ev.id, n.product, n.task_id, n.model_dump_json(), ev.ts)) for n in notices_for(ev, landings=landings)]


def _seq_of(task_id: str, default: int) -> int:
    try:
        return int(task_id.lstrip("T"))
    except ValueError:
        return default


def _encodable_event(ev: Event, sql: Any = ()) -> bool:
    """True if every string of `ev` and of its statements' parameters can be written as UTF-8 (checked only on
    the checked path, not on posts: their JSON escapes a surrogate)."""
    params = [p for _, ps in sql for p in ps if isinstance(p, str)]
    try:
        orjson.dumps([ev.actor, ev.product, ev.task_id, ev.data, params], default=str,
                     option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        try:
            json.dumps([ev.actor, ev.product, ev.task_id, ev.data, params], default=str,
                       ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, TypeError, ValueError):
            return False
    return True


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))


def _dumps(data: dict[str, Any]) -> str:
    """An event's data as JSON text: orjson (several times json's speed on the ingest path), json for what it refuses."""
    try:
        return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, default=str)
