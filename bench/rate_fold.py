"""The rate of a big factory: load its event log and fold every metric, per day and week, for every product.

The log is the demo history's simulation (cockpit.demo.history.plan) replicated into many
products, written with raw sqlite3 into a real store file; then timed: `load_events` (the
store's read connection) and `metrics.compute`. Anchor: reading the same rows and parsing
their JSON with plain sqlite3, the least any fold must do. Goal: a year-sized log (>= 200k
events) in under 3 s, load and fold together.

    python bench/rate_fold.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cockpit.demo.history import plan  # noqa: E402
from cockpit.domain import metrics  # noqa: E402
from cockpit.factory.rate import load_events  # noqa: E402
from cockpit.store import Store  # noqa: E402

GOAL_S = 3.0


def write_log(path: Path, replicas: int) -> int:
    """`replicas` copies of the demo history (3 products each, renamed), one after the other in time."""
    asyncio.run(_create(path))
    now = time.time()
    base = plan(now=now)
    rows: list[tuple[Any, ...]] = []
    span = 6 * 7 * 86400
    for r in range(replicas):
        shift = (r - replicas + 1) * span / 8  # overlapping waves: a long-lived, busy factory
        for product, tasks in base.items():
            name = f"{product}-{r}"
            for t in tasks:
                for e in t.events:
                    if e.kind.startswith("@"):
                        continue
                    rows.append((e.ts + shift, e.kind, e.actor, name, f"{t.id}-{r}", json.dumps(e.data)))
    rows.sort(key=lambda x: x[0])
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO events(ts, kind, actor, product, task_id, data) VALUES (?,?,?,?,?,?)", rows)
    con.commit()
    con.close()
    return len(rows)


async def _create(path: Path) -> None:
    store = await Store.open(path)
    await store.close()


def raw_scan(path: Path) -> float:
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    for row in con.execute("SELECT id, ts, kind, actor, product, task_id, data FROM events ORDER BY id"):
        json.loads(row[6])
    con.close()
    return time.perf_counter() - t0


def fold(path: Path) -> tuple[float, float, int]:
    async def go() -> tuple[float, float, int]:
        store = await Store.open(path)
        try:
            t0 = time.perf_counter()
            events = await load_events(store)
            t1 = time.perf_counter()
            rate = metrics.compute(events)
            t2 = time.perf_counter()
            return t1 - t0, t2 - t1, len(rate.products)
        finally:
            await store.close()

    return asyncio.run(go())


def measure(replicas: int = 48, repeats: int = 3) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rate-bench-", dir=os.environ.get("BENCH_TMP")))
    path = tmp / "cockpit.db"
    n = write_log(path, replicas)
    scans = [raw_scan(path) for _ in range(repeats)]
    runs = [fold(path) for _ in range(repeats)]
    load = statistics.median(r[0] for r in runs)
    compute = statistics.median(r[1] for r in runs)
    return {"events": n, "products": runs[0][2], "load_s": load, "compute_s": compute, "total_s": load + compute,
            "raw_scan_s": statistics.median(scans)}


def bench_rows() -> dict[str, Any]:
    m = measure()
    total = m["total_s"]
    return {"rows": [{"what": f"rate: load + fold {m['events']:,} events, {m['products']} products",
                      "figure": f"{total:.2f} s ({m['events'] / total:,.0f} events/s)",
                      "goal": f"< {GOAL_S:.0f} s", "anchor": f"raw sqlite3 scan + json {m['raw_scan_s']:.2f} s",
                      "ratio": f"{total / m['raw_scan_s']:.1f}", "ok": total < GOAL_S}]}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
