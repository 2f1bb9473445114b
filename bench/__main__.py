"""`make bench`: every performance goal as a rate or ratio, beside an anchor measured in the same run.

Prints one table and writes bench/results.json (not committed). Each benchmark is
a module of this folder with a `measure()`; a benchmark that fails is reported as
an error row, never skipped silently. Timings are medians over repeats, with the
spread where the module reports it.

    make bench                 # everything (< 10 minutes on 2 cores)
    python -m bench store_ingest startup   # only these
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("BENCH_TMP", "/var/tmp")


@dataclass
class Row:
    what: str
    figure: str
    goal: str
    anchor: str
    ratio: str
    verdict: str  # pass, FAIL, info, error


def _ok(b: bool) -> str:
    return "pass" if b else "FAIL"


GOAL_RAW_RATIO = 0.5


def store_rows(m: dict[str, Any]) -> list[Row]:
    lo, hi = m["cockpit_spread"]
    rows = [Row("store ingest (events/s, writer)", f"{m['cockpit_rate']:,.0f} ({lo:,.0f}-{hi:,.0f})",
                ">= 50,000 and >= 50% of raw", f"raw sqlite3, same schema {m['raw_rate']:,.0f}", f"{m['ratio']:.2f}",
                _ok(m["cockpit_rate"] >= 50_000 and m["ratio"] >= 0.5)),
            Row("  the same vs a table without indexes", f"{m['cockpit_rate']:,.0f}", "(what 3 indexes cost)",
                f"raw sqlite3, no index {m['bare_rate']:,.0f}", f"{m['bare_ratio']:.2f}", "info")]
    base = m["cockpit_rate"]
    for size, rate in m["growth"].items():
        lo, hi = m["growth_spread"][size]
        raw = m["growth_raw"][size]
        rows.append(Row(f"ingest with {size:,} events stored", f"{rate:,.0f}/s ({lo:,.0f}-{hi:,.0f})",
                        "flat: >= 0.5 of empty, >= 50% of raw",
                        f"empty store {base:,.0f}/s; raw here {raw:,.0f}/s", f"{rate / base:.2f} / {rate / raw:.2f}",
                        _ok(rate / base >= 0.5 and rate / raw >= GOAL_RAW_RATIO)))
    return rows


def startup_rows(m: dict[str, Any]) -> list[Row]:
    opens = m["open"]
    empty = opens.get(0, next(iter(opens.values())))["median_s"]
    rows = []
    for size, t in opens.items():
        if size == 0:
            continue
        rows.append(Row(f"open cockpit, {size:,} events", f"{t['median_s'] * 1000:.0f} ms", "< 1 s, flat",
                        f"empty store {empty * 1000:.0f} ms", f"{t['median_s'] / empty:.2f}",
                        _ok(t["median_s"] < 1.0)))
    return rows


def orchestration_rows(m: dict[str, Any]) -> list[Row]:
    return [Row("orchestration overhead per turn", f"{m['overhead_s_per_turn'] * 1000:.1f} ms", "< 1% of a turn",
                f"turn at 2 s latency {m['realistic_turn_s']:.2f} s", f"{m['ratio'] * 100:.2f}%",
                _ok(m["ratio"] < 0.01))]


def merge_rows(m: dict[str, Any]) -> list[Row]:
    return [Row(f"merge queue, {m['tasks']} queued", f"{m['merges_per_hour']:,.0f} merges/h",
                "every landing tested", f"test cmd alone {m['floor_per_hour']:,.0f}/h", f"{m['ratio']:.2f}",
                _ok(m["landed"] == m["tasks"]))]


def memory_rows(m: dict[str, Any]) -> list[Row]:
    return [Row(f"memory recall, top-10 of {m['lessons']:,} lessons", f"p50 {m['p50_ms']:.1f} / p99 {m['p99_ms']:.1f} ms",
                f"p50 < {m['goal_p50_ms']:.0f} ms", f"{m['queries']} queries, {m['mean_hits']} hits each",
                f"{m['p50_ms'] / m['goal_p50_ms']:.2f} of goal", _ok(m["p50_ms"] < m["goal_p50_ms"]))]


def rules_rows(m: dict[str, Any]) -> list[Row]:
    return [Row(f"rule saved -> in force ({m['edits']} edits)",
                f"p50 {m['watch_p50_ms']:.0f} / p99 {m['watch_p99_ms']:.0f} ms", f"p50 < {m['goal_ms']:.0f} ms",
                f"next call p50 {m['next_call_p50_ms']:.0f} ms, per call {m['per_call_cost_p50_ms']:.2f} ms",
                f"{m['watch_p50_ms'] / m['goal_ms']:.2f} of goal", _ok(m["watch_p50_ms"] < m["goal_ms"]))]


def generic_rows(name: str) -> Callable[[dict[str, Any]], list[Row]]:
    """Modules that format their own rows: measure() returns {"rows": [{what, figure, goal, anchor, ratio, ok}]}."""

    def conv(m: dict[str, Any]) -> list[Row]:
        if "rows" not in m:
            return [Row(name, json.dumps(m, default=str)[:60], "", "", "", "info")]
        return [Row(r["what"], str(r["figure"]), str(r.get("goal", "")), str(r.get("anchor", "")),
                    str(r.get("ratio", "")), r.get("verdict") or _ok(bool(r.get("ok")))) for r in m["rows"]]

    return conv


BENCHES: dict[str, tuple[str, Callable[[dict[str, Any]], list[Row]], dict[str, Any]]] = {
    "store_ingest": ("store_ingest", store_rows, {}),
    "startup": ("startup", startup_rows, {}),
    "orchestration": ("orchestration", orchestration_rows, {}),
    "merge_throughput": ("merge_throughput", merge_rows, {}),
    "memory_recall": ("memory_recall", memory_rows, {}),
    "rules_reload": ("rules_reload", rules_rows, {}),
}


def _extra() -> None:
    """Benchmarks contributed by other modules: each exposes `bench_rows() -> dict` with "rows"."""
    for name in ("cache_ratio", "memory_recall", "rules_reload", "ui_load", "agent_log", "crash", "rate_fold",
                 "demo_cost", "sandbox_cost", "tests_gate", "notify"):
        if (HERE / f"{name}.py").exists() and name not in BENCHES:
            BENCHES[name] = (name, generic_rows(name), {})


def run(names: list[str]) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        module_name, conv, kwargs = BENCHES[name]
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(module_name)
            fn = getattr(mod, "bench_rows", None) or mod.measure
            got = conv(fn(**kwargs))
        except Exception as e:  # a broken benchmark is a row, not a silent gap
            traceback.print_exc()
            got = [Row(name, "error", "", "", "", f"error: {type(e).__name__}")]
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rows.extend(got)
    return rows


def table(rows: list[Row]) -> str:
    head = Row("what", "figure", "goal", "anchor (same run)", "ratio", "verdict")
    cols = list(asdict(head))
    widths = {c: max(len(getattr(r, c)) for r in [head, *rows]) for c in cols}
    lines = []
    for i, r in enumerate([head, *rows]):
        lines.append("  ".join(getattr(r, c).ljust(widths[c]) for c in cols).rstrip())
        if i == 0:
            lines.append("  ".join("-" * widths[c] for c in cols))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    _extra()
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE.parent).stdout.strip()
    rows = run(names)
    print(f"cockpit bench @ {commit or 'unknown'} on {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(table(rows))
    (HERE / "results.json").write_text(json.dumps({"commit": commit, "rows": [asdict(r) for r in rows]}, indent=2))
    return 1 if any(r.verdict.startswith("error") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
