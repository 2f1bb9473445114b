"""Store ingest: events/s through the cockpit's writer vs raw sqlite3 executemany, and how it grows.

The cockpit's path is the real one: `Store.post()` of realistic agent events
(text chunks, tool calls, model calls) into the single batched writer, WAL,
durable commits (synchronous=NORMAL), timed until the last is committed and the
WAL copied into the database file (the store checkpoints beside the writer; the
timing includes a final checkpoint, as raw's commit includes its own). The anchor is plain `sqlite3` inserting
the same rows (already serialised) with one `executemany` in one transaction into
the cockpit's own events table (its indexes included: the database's share of the
cost, so the ratio is what the writer adds), on the same disk, in the same run.
A second anchor, the same insert into a bare table without indexes, shows what
the three indexes cost. Growth: the same ingest with 10k, 100k and 1M events
already in the store.

    python bench/store_ingest.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cockpit.domain import Event  # noqa: E402
from cockpit.store import Store  # noqa: E402

GOAL_RATE = 50_000
GOAL_RATIO = 0.5
GROWTH_REPEATS = 3


def realistic(i: int) -> Event:
    agent = f"builder-{i % 20}"
    kind = i % 10
    if kind < 7:
        return Event(kind="agent.text", actor=agent, product=f"p{i % 3}", task_id=f"T{i % 40}",
                     data={"agent": agent, "text": "Reading the orders module to see how totals are computed.\n"})
    if kind < 9:
        return Event(kind="agent.tool", actor=agent, product=f"p{i % 3}", task_id=f"T{i % 40}",
                     data={"agent": agent, "name": "read_file", "input": {"path": "shop/orders.py"}})
    return Event(kind="model.call", actor=agent, product=f"p{i % 3}", task_id=f"T{i % 40}",
                 data={"agent": agent, "call_id": f"call_{i:016x}", "model": "claude-sonnet-5-5", "usd": 0.0123,
                       "usage": {"input_tokens": 1200, "output_tokens": 300, "cache_read_input_tokens": 9000,
                                 "cache_creation_input_tokens": 0}, "stop_reason": "tool_use"})


def _rows(events: list[Event], start: int) -> list[tuple[Any, ...]]:
    return [(start + n, e.ts, e.kind, e.actor, e.product, e.task_id, json.dumps(e.data)) for n, e in enumerate(events)]


def prefill(db: Path, n: int) -> None:
    """Put n events in a fresh store file fast (raw inserts, the cockpit's own schema)."""
    asyncio.run(_init(db))  # the cockpit's own schema, migrations and all
    c = sqlite3.connect(db)
    c.execute("PRAGMA synchronous=OFF")
    batch = 50_000
    for start in range(0, n, batch):
        evs = [realistic(i) for i in range(start, min(n, start + batch))]
        with c:
            c.executemany("INSERT INTO events(id, ts, kind, actor, product, task_id, data) VALUES (?,?,?,?,?,?,?)",
                          _rows(evs, start + 1))
    c.close()


async def _init(db: Path) -> None:
    s = await Store.open(db)
    await s.close()


def _settle() -> None:
    """Write back what earlier steps left dirty in the OS cache (a 1M-event prefill is ~300 MB): otherwise the
    next measured commit's fsync pays for it (it did: the 1M-event figure read 0.48 of empty; settled, ~1.0)."""
    os.sync()


async def _ingest(db: Path, n: int) -> float:
    s = await Store.open(db)
    _settle()
    events = [realistic(i) for i in range(n)]
    t0 = time.perf_counter()
    for e in events:
        s.post(e)
    await s.flush()
    await s.checkpoint()  # and copied into the database file, as raw's one transaction is when it commits
    dt = time.perf_counter() - t0
    await s.close()
    return n / dt


def raw_rate(db: Path, n: int, *, bare: bool = False, existing: bool = False) -> float:
    """Raw sqlite3: the cockpit's schema (bare=False) or a table of the same columns and no index; `existing`:
    into a store that is already there."""
    if not bare and not existing:
        asyncio.run(_init(db))
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    if bare:
        c.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, "
                  "actor TEXT NOT NULL, product TEXT, task_id TEXT, data TEXT NOT NULL)")
    start = (c.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0) + 1
    rows = _rows([realistic(i) for i in range(n)], start)
    _settle()
    t0 = time.perf_counter()
    with c:
        c.executemany("INSERT INTO events(id, ts, kind, actor, product, task_id, data) VALUES (?,?,?,?,?,?,?)", rows)
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def measure(n: int = 50_000, repeats: int = 5, sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        root = Path(d)
        cockpit, raw, bare = [], [], []
        for r in range(repeats):
            cockpit.append(asyncio.run(_ingest(root / f"c{r}.db", n)))
            raw.append(raw_rate(root / f"r{r}.db", n))
            bare.append(raw_rate(root / f"b{r}.db", n, bare=True))
        growth, growth_raw, growth_spread = {}, {}, {}
        for size in sizes:
            db = root / f"g{size}.db"
            prefill(db, size)
            at_size, raw_at_size = [], []
            for _ in range(GROWTH_REPEATS):  # each run adds n events: 1M + 150k is still "1M stored"
                at_size.append(asyncio.run(_ingest(db, n)))
                raw_at_size.append(raw_rate(db, n, existing=True))
            growth[size], growth_raw[size] = _median(at_size), _median(raw_at_size)
            growth_spread[size] = (min(at_size), max(at_size))
            db.unlink()
        return {
            "events": n, "repeats": repeats,
            "cockpit_rate": _median(cockpit), "cockpit_spread": (min(cockpit), max(cockpit)),
            "raw_rate": _median(raw), "raw_spread": (min(raw), max(raw)),
            "ratio": _median(cockpit) / _median(raw),
            "bare_rate": _median(bare), "bare_ratio": _median(cockpit) / _median(bare),
            "growth": growth, "growth_raw": growth_raw, "growth_spread": growth_spread,
        }


def main() -> int:
    m = measure()
    print(f"cockpit writer: {m['cockpit_rate']:,.0f} events/s (spread {m['cockpit_spread'][0]:,.0f}-"
          f"{m['cockpit_spread'][1]:,.0f})")
    print(f"raw sqlite3:    {m['raw_rate']:,.0f} events/s into the same schema; ratio {m['ratio']:.2f}")
    print(f"raw, no index:  {m['bare_rate']:,.0f} events/s; ratio {m['bare_ratio']:.2f}")
    for size, rate in m["growth"].items():
        print(f"with {size:>9,} events already: {rate:,.0f} events/s (raw {m['growth_raw'][size]:,.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
