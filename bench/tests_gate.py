"""The tests gate in the headless demo: how long a check stage takes, and test-suite runs per merged task.

The demo (`cockpit demo --headless`) runs for real; everything is read back from its event log:
- check stage time: from `gate.started` (tests) to the stage's last verdict (the guard's, or the tests
  verdict when it failed), median over the run's checks; it covers the clean checkout, the run with
  its live outcome stream, main's baseline, main's tests apart and the identity comparison;
- suite runs: one per tests verdict, one per merge verdict that really ran (a reused green tree says
  "not run again"); per merged task, counting the runs its landing cost (the check of the commit
  that landed and its merge runs), and beside it every run of the demo (failed rounds included).

Anchor (same run, after the demo, on an idle box): the product's test command alone on a plain checkout,
in the sandbox (the floor any gate that runs the suite pays), and one whole gate run of the same commit
beside it (clean checkout, the reporter's stream, the cross-check).

    python bench/tests_gate.py
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_RUNS_PER_MERGE = 1.2


def _events(db: Path) -> list[tuple[float, str, str | None, dict[str, Any]]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as raw:
        rows = raw.execute("SELECT ts, kind, task_id, data FROM events WHERE kind IN "
                           "('gate.started', 'gate.verdict', 'task.merged') ORDER BY id").fetchall()
    out = [(ts, kind, task, json.loads(data)) for ts, kind, task, data in rows]
    return [e for e in out if not e[3].get("demo_history")]


def fold(events: list[tuple[float, str, str | None, dict[str, Any]]]) -> dict[str, Any]:
    stages: list[float] = []
    open_at: dict[str, float] = {}
    runs = reused = merge_failed = apart = 0
    merged: set[str] = set()
    checked: dict[tuple[str | None, str], int] = {}  # (task, commit) -> check runs on it
    merge_runs: dict[str | None, int] = {}
    merge_runs_of: dict[tuple[str | None, str], int] = {}  # (task, source commit) -> merge runs made on it
    landed: dict[str, str] = {}  # task -> the commit of it that merged
    for ts, kind, task, data in events:
        gate = data.get("gate")
        if kind == "gate.started" and gate == "tests" and task:
            open_at.setdefault(task, ts)  # a check that failed on a merge train and ran again alone: one stage
        elif kind == "gate.verdict" and gate == "train":
            runs += 1  # the run on top of the tasks ahead, before the run alone
        elif kind == "gate.verdict" and gate == "tests" and str(data.get("detail", "")).startswith("not run again"):
            reused += 1  # the same inputs were checked green before (another task, or before a restart)
            if task in open_at:
                open_at.pop(task)
        elif kind == "gate.verdict" and gate == "tests":
            runs += 1
            apart += "apart" in data  # main's tests apart from the change's test files: a run of another tree
            key = (task, str(data.get("commit")))
            checked[key] = checked.get(key, 0) + 1
            if data.get("outcome") == "fail" and task in open_at:
                stages.append(ts - open_at.pop(task))
        elif kind == "gate.verdict" and gate == "guard" and task in open_at:
            stages.append(ts - open_at.pop(task))
        elif kind == "gate.verdict" and gate == "merge":
            if str(data.get("detail", "")).startswith("not run again"):
                reused += 1
            else:
                runs += 1
                merge_runs[task] = merge_runs.get(task, 0) + 1
                merge_runs_of[(task, str(data.get("source")))] = merge_runs_of.get((task, str(data.get("source"))), 0) + 1
                merge_failed += data.get("outcome") == "fail"
            if data.get("outcome") == "pass" and task:
                landed[task] = str(data.get("source"))
        elif kind == "task.merged" and task:
            merged.add(task)
    # the runs a merged task's landing cost: the check of the commit that landed, and its merge runs (rounds
    # that failed on earlier commits are the demo's story, counted in runs_per_merged)
    landing = sum(checked.get((t, landed.get(t, "")), 0) + merge_runs.get(t, 0) for t in merged)
    # the same without the merge runs of earlier commits (a failed merge round, like a failed check round)
    landed_only = sum(checked.get((t, landed.get(t, "")), 0) + merge_runs_of.get((t, landed.get(t, "")), 0)
                      for t in merged)
    return {"stage_median_s": statistics.median(stages) if stages else float("nan"), "checks": len(stages),
            "runs": runs, "reused": reused, "merged": len(merged), "apart_runs": apart,
            # merge runs that were needed: main moved after the check (the merge tree is new), or the merge failed
            "merge_runs": sum(merge_runs.values()), "merge_failed": merge_failed,
            "runs_per_merged": runs / len(merged) if merged else float("nan"),
            "landing_runs_per_merged": landing / len(merged) if merged else float("nan"),
            "landed_commit_runs_per_merged": landed_only / len(merged) if merged else float("nan")}


async def _floor(product: Path, command: str, repeats: int = 9) -> tuple[float, float]:
    """(the bare command on a plain clone, one whole gate run: clean checkout, reporter, cross-check), each
    the median of `repeats`, taken in turns after the demo ended (an idle box)."""
    from cockpit.factory.gates import run_tests_gate
    from cockpit.host.sandbox import Sandbox

    sandbox = Sandbox("bwrap")
    await sandbox.warm()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=product, capture_output=True, text=True,
                          check=True).stdout.strip()
    bare, gate = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await sandbox.run(command, cwd=product, writable=[product], timeout_s=120, output_cap_bytes=64_000)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = await run_tests_gate(sandbox, command, product, head, timeout_s=120, output_cap_bytes=64_000)
        gate.append(time.perf_counter() - t0)
        if not res.passed:
            raise RuntimeError(f"the gate failed main's own tests: {res.detail()}")
    return statistics.median(bare), statistics.median(gate)


def measure(root: Path = ROOT) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bench-gate-", dir=os.environ.get("BENCH_TMP")))
    demo = base / "factory"
    try:
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "cockpit", "demo", "--headless", "--dir", str(demo),
                              "--timeout", "300"], cwd=root, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        from cockpit.cli import EXIT_ALL_DONE, EXIT_WAITS_FOR_YOU

        if run.returncode not in (EXIT_ALL_DONE, EXIT_WAITS_FOR_YOU):  # the demo ends with tasks waiting for you
            raise RuntimeError(f"the headless demo exited {run.returncode}: {run.stderr[-2000:]}")
        m = fold(_events(demo / "memory" / "cockpit.db"))
        from cockpit.config import load_factory

        cfg = load_factory(demo / "factory.toml")
        product = cfg.products[0]
        plain = base / "plain"
        subprocess.run(["git", "clone", "-q", str(cfg.product_path(product.name)), str(plain)], check=True)
        m["floor_s"], m["gate_run_s"] = asyncio.run(_floor(plain, product.test_command))
        m["wall_s"] = wall
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return m


def bench_rows() -> dict[str, Any]:
    m = measure()
    return {"rows": [
        {"what": f"demo tests gate, check stage ({m['checks']} checks)", "figure": f"{m['stage_median_s']:.2f} s median",
         "goal": "within 15% of before", "anchor": f"test command alone {m['floor_s']:.2f} s",
         "ratio": f"{m['stage_median_s'] / m['floor_s']:.2f}", "verdict": "info"},
        {"what": "  one gate run, idle (checkout, reporter, cross-check)", "figure": f"{m['gate_run_s']:.3f} s",
         "goal": "(before issue 17: 0.172 s)", "anchor": f"test command alone {m['floor_s']:.3f} s",
         "ratio": f"{m['gate_run_s'] / m['floor_s']:.2f}", "verdict": "info"},
        {"what": "demo suite runs per merged task, landing", "figure": f"{m['landing_runs_per_merged']:.2f}",
         "goal": f"<= {GOAL_RUNS_PER_MERGE}",
         "anchor": (f"{m['reused']} reused a green, {m['merge_runs']} merges ran ({m['merge_failed']} failed, the rest "
                    f"on a main that moved after the check), {m['merged']} merged"),
         "ratio": f"{m['landing_runs_per_merged'] / GOAL_RUNS_PER_MERGE:.2f} of goal",
         "ok": m["landing_runs_per_merged"] <= GOAL_RUNS_PER_MERGE},
        {"what": "  the landed commits' own runs (failed merge rounds apart)",
         "figure": f"{m['landed_commit_runs_per_merged']:.2f}", "goal": f"<= {GOAL_RUNS_PER_MERGE}",
         "anchor": "a failed merge round counted like a failed check round", "ratio": "", "verdict": "info"},
        {"what": "  the same with every round's run", "figure": f"{m['runs_per_merged']:.2f}",
         "goal": "(failed rounds are the demo's story)", "anchor": f"{m['runs']} runs, {m['merged']} merged",
         "ratio": "", "verdict": "info"},
        {"what": "  main's tests apart (another tree: main's test files, none of the change's)",
         "figure": f"{m['apart_runs'] / m['merged']:.2f}" if m["merged"] else "nan", "goal": "(per merged task)",
         "anchor": f"{m['apart_runs']} runs beside the checks", "ratio": "", "verdict": "info"},
    ]}


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    print(json.dumps(measure(root), indent=2))
