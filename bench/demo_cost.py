"""Dollars per merged demo task: the headless demo, run for real, priced from its own event log.

The demo (`cockpit demo --headless`) runs its agents against the scripted model over the real SDK; every call's
model and usage are in the log (`model.call`). Its simulated history (events marked `demo_history`) is left out:
only the calls the agents made in this run, over the tasks that merged in this run.

Anchor (same run): the same calls priced as if nothing were cached (every input token at the model's input
price): the ratio is what the prompt cache saves on each merged task.

    python bench/demo_cost.py
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _events(db: Path, kinds: tuple[str, ...]) -> list[tuple[str, str | None, dict[str, Any]]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as raw:
        marks = ",".join("?" * len(kinds))
        return [(kind, task, json.loads(data)) for kind, task, data in
                raw.execute(f"SELECT kind, task_id, data FROM events WHERE kind IN ({marks}) ORDER BY id", kinds)]


def measure() -> dict[str, Any]:
    from cockpit.config import load_factory
    from cockpit.domain.events import Kind
    from cockpit.domain.prices import Usage

    base = Path(tempfile.mkdtemp(prefix="bench-demo-", dir=os.environ.get("BENCH_TMP")))
    demo = base / "factory"
    try:
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "cockpit", "demo", "--headless", "--dir", str(demo),
                              "--timeout", "300"], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        from cockpit.cli import EXIT_ALL_DONE, EXIT_WAITS_FOR_YOU

        if run.returncode not in (EXIT_ALL_DONE, EXIT_WAITS_FOR_YOU):  # the demo ends with tasks waiting for you
            raise RuntimeError(f"the headless demo exited {run.returncode}: {run.stderr[-2000:]}")
        events = _events(demo / "memory" / "cockpit.db", (Kind.MODEL_CALL.value, Kind.MERGED.value))
        prices = load_factory(demo / "factory.toml").price_table()  # the factory's own prices, as the meter's
    finally:
        shutil.rmtree(base, ignore_errors=True)

    calls = [d for kind, _, d in events if kind == Kind.MODEL_CALL.value and not d.get("demo_history")]
    merged = {task for kind, task, d in events if kind == Kind.MERGED.value and not d.get("demo_history")}
    spent = uncached = 0.0
    tokens_in = 0
    for d in calls:
        usage = Usage(**{k: v for k, v in d["usage"].items() if k in Usage.model_fields})
        spent += prices.cost(d["model"], usage)
        flat = Usage(input_tokens=usage.total_input, output_tokens=usage.output_tokens)
        uncached += prices.cost(d["model"], flat)
        tokens_in += usage.total_input
    if not merged:
        raise RuntimeError("the demo merged no task: nothing to divide by")
    return {"calls": len(calls), "merged": len(merged), "spent_usd": spent, "uncached_usd": uncached,
            "per_task_usd": spent / len(merged), "uncached_per_task_usd": uncached / len(merged),
            "input_tokens": tokens_in, "demo_wall_s": wall}


def bench_rows() -> dict[str, Any]:
    m = measure()
    return {**m, "rows": [
        {"what": f"dollars per merged demo task ({m['merged']} merged, {m['calls']} calls)",
         "figure": f"${m['per_task_usd']:.4f} (total ${m['spent_usd']:.4f})",
         "goal": "reported; less than uncached",
         "anchor": f"same calls uncached ${m['uncached_per_task_usd']:.4f}",
         "ratio": f"{m['per_task_usd'] / m['uncached_per_task_usd']:.2f}",
         "ok": m["per_task_usd"] < m["uncached_per_task_usd"]},
        {"what": "headless demo, wall time", "figure": f"{m['demo_wall_s']:.1f} s", "goal": "(info)",
         "anchor": f"{m['merged']} tasks merged", "ratio": f"{m['demo_wall_s'] / m['merged']:.1f} s/task",
         "verdict": "info"},
    ]}


if __name__ == "__main__":
    r = bench_rows()
    for row in r["rows"]:
        print(f"{row['what']}: {row['figure']} (goal {row['goal']}; {row['anchor']}; ratio {row['ratio']})")
