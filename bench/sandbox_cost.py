"""What the allow-list sandbox (issue 16) costs: start cost per command, and the demo products' tests gate.

Anchor, same run: the previous view (`--ro-bind / /` plus a deny list, as before issue 16),
rebuilt here as `WholeRootView`, on the same trees. Goal: within 10% of it. Also shown:
the same command unconfined (`sandbox = "off"`), the floor.

    python -m bench sandbox_cost
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cockpit.demo.build import write_demo  # noqa: E402
from cockpit.factory.gates import run_tests_gate  # noqa: E402
from cockpit.host.sandbox import _SANDBOX_HOME, Sandbox  # noqa: E402
from cockpit.factory.workspaces import Workspaces, git  # noqa: E402

GOAL = 1.10
COMMANDS = 120  # per view; ~5 ms each
GATE_REPEATS = 3
DEMO_TEST = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"


class WholeRootView(Sandbox):
    """The sandbox's view before issue 16: the whole file system read-only, a deny list hidden."""

    def _bwrap_argv(self, bwrap: str, command: str, cwd: Path, writable: Iterable[Path], env: dict[str, str],
                    readable: Iterable[Path] = (), etc: object = None) -> list[str]:
        argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--dir", _SANDBOX_HOME]
        for h in self.hidden:
            real = os.path.realpath(h)
            if os.path.isdir(real):
                argv += ["--tmpfs", real]
        for r in [*readable, sys.prefix]:  # the cockpit's Python, wherever it lives (a clone under /tmp too)
            argv += ["--ro-bind", os.path.realpath(r), os.path.realpath(r)]
        for w in writable:
            argv += ["--bind", os.path.realpath(w), os.path.realpath(w)]
        argv += ["--chdir", os.path.realpath(cwd)]
        # the old view ran the cockpit's Python by PATH, as the allow-list does through its toolchains
        env = {**env, "PATH": f"{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}"}
        for k, v in env.items():
            argv += ["--setenv", k, v]
        return [*argv, "--", shutil.which("bash") or "/bin/bash", "-c", command]


async def _per_command(box: Sandbox, wt: Path, n: int) -> tuple[list[float], float]:
    """Wall time of each run, and the CPU time (user + sys) its processes took in all."""
    times = []
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        t0 = time.perf_counter()
        r = await box.run("true", cwd=wt, writable=[wt], timeout_s=30, output_cap_bytes=4096)
        times.append(time.perf_counter() - t0)
        assert r.ok, r.output
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return times, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


async def _measure(base: Path) -> dict[str, Any]:
    factory = write_demo(base / "demo")
    ws = Workspaces(base / "worktrees")
    boxes = {"allow-list": Sandbox("bwrap"), "whole root": WholeRootView("bwrap"), "off": Sandbox("off")}
    shop = factory.parent / "products" / "shop"
    wt = await ws.ensure("shop", shop, "main", "B1")
    per_cmd: dict[str, list[float]] = {k: [] for k in boxes}
    cpu: dict[str, float] = {k: 0.0 for k in boxes}
    # one command each first, not counted: what a process pays once (bwrap's probe, the /etc copy)
    t0 = time.perf_counter()
    await _per_command(boxes["allow-list"], wt, 1)
    first = time.perf_counter() - t0
    for name in ("whole root", "off"):
        await _per_command(boxes[name], wt, 1)
    for _ in range(COMMANDS):  # interleaved command by command: drift on a shared machine hits all alike
        for name, box in boxes.items():
            times, spent = await _per_command(box, wt, 1)
            per_cmd[name] += times
            cpu[name] += spent
    gates: dict[str, dict[str, list[float]]] = {}
    for product in sorted(p.name for p in (factory.parent / "products").iterdir()):
        repo = factory.parent / "products" / product
        pwt = await ws.ensure(product, repo, "main", f"G-{product}")
        sha = await git("rev-parse", "HEAD", cwd=pwt)
        gates[product] = {"allow-list": [], "whole root": []}
        for _ in range(GATE_REPEATS):
            for name in ("allow-list", "whole root"):
                res = await run_tests_gate(boxes[name], DEMO_TEST, pwt, sha, timeout_s=120, output_cap_bytes=64_000)
                assert res.outcome == "pass", (product, name, res.tail)
                gates[product][name].append(res.duration_s)
    return {"per_cmd": per_cmd, "cpu_ms": {k: v / COMMANDS * 1000 for k, v in cpu.items()}, "gates": gates,
            "first_ms": first * 1000}


def measure() -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bench-sandbox-", dir=os.environ.get("BENCH_TMP", "/var/tmp")))
    try:
        return asyncio.run(_measure(base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_rows() -> dict[str, Any]:
    m = measure()
    med = {k: statistics.median(v) * 1000 for k, v in m["per_cmd"].items()}
    p10 = {k: statistics.quantiles(v, n=10)[0] * 1000 for k, v in m["per_cmd"].items()}
    rows = [{"what": "sandbox start, per command (`true`)", "figure": f"{med['allow-list']:.1f} ms",
             "goal": f"<= {GOAL:.2f} x the whole-root view",
             "anchor": f"whole-root view {med['whole root']:.1f} ms; unconfined {med['off']:.1f} ms",
             "ratio": f"{med['allow-list'] / med['whole root']:.2f}", "ok": med["allow-list"] <= GOAL * med["whole root"]},
            {"what": "  the same, 10th percentile", "figure": f"{p10['allow-list']:.1f} ms",
             "goal": "(info: load on a shared machine adds to both, pulling the medians' ratio towards 1)",
             "anchor": f"whole-root view {p10['whole root']:.1f} ms", "ratio": f"{p10['allow-list'] / p10['whole root']:.2f}",
             "verdict": "info"},
            {"what": "  the same, CPU time of its processes", "figure": f"{m['cpu_ms']['allow-list']:.2f} ms",
             "goal": "(info: wall time on a shared machine is noisy)",
             "anchor": f"whole-root view {m['cpu_ms']['whole root']:.2f} ms",
             "ratio": f"{m['cpu_ms']['allow-list'] / m['cpu_ms']['whole root']:.2f}", "verdict": "info"},
            {"what": "  first command of a process (copies /etc)", "figure": f"{m['first_ms']:.0f} ms",
             "goal": "(info: once per process and per change of /etc)", "anchor": "", "ratio": "", "verdict": "info"}]
    total_new = total_old = 0.0
    for product, t in m["gates"].items():
        new, old = statistics.median(t["allow-list"]), statistics.median(t["whole root"])
        total_new += new
        total_old += old
        rows.append({"what": f"  tests gate, demo {product}", "figure": f"{new * 1000:.0f} ms", "goal": "(info)",
                     "anchor": f"whole-root view {old * 1000:.0f} ms", "ratio": f"{new / old:.2f}", "verdict": "info"})
    rows.append({"what": "tests gate, the demo products (sum of medians)", "figure": f"{total_new:.2f} s",
                 "goal": f"<= {GOAL:.2f} x the whole-root view", "anchor": f"whole-root view {total_old:.2f} s",
                 "ratio": f"{total_new / total_old:.2f}", "ok": total_new <= GOAL * total_old})
    return {"rows": rows}


if __name__ == "__main__":
    import json

    print(json.dumps(bench_rows(), indent=2, default=str))
