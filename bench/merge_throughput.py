"""Merge queue throughput: merges per hour with 10 tasks queued on one product, 2 cores.

Each task changes its own file; the queue builds each merge onto the current main,
runs the product's test command on exactly that sha in the sandbox, and moves main.
Anchor, same run: the test command alone, run as many times (the floor any queue that
tests every landing commit must pay). Ratio = queue rate / floor rate.

    python bench/merge_throughput.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gitrepo import make_repo  # noqa: E402

from cockpit.config import load_factory  # noqa: E402
from cockpit.domain import Event, Kind, TaskState  # noqa: E402
from cockpit.factory.merge_queue import MergeQueue  # noqa: E402
from cockpit.host.sandbox import Sandbox  # noqa: E402
from cockpit.factory.workspaces import Workspaces  # noqa: E402
from cockpit.store import Store  # noqa: E402

PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
BASE = {"calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        "pytest.ini": "[pytest]\npythonpath = .\n"}


async def _ready(store: Store, ws: Workspaces, repo: Path, n: int) -> str:
    created = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p", data={"title": f"t{n}"}))
    tid = created.task_id

    async def ev(kind: str, actor: str = "system", **data: Any) -> None:
        await store.append(Event(kind=kind, actor=actor, product="p", task_id=tid, data=data))

    await ev(Kind.TASK_STARTED, agent="builder-1")
    wt = await ws.ensure("p", repo, "main", tid)
    (wt / f"mod{n}.py").write_text(f"VALUE = {n}\n")
    sha = await ws.commit(wt, f"add mod{n}", author="builder-1")
    await ev(Kind.COMMITTED, "builder-1", sha=sha)
    await ev(Kind.SUBMITTED, "builder-1")
    await ev(Kind.VERDICT, gate="tests", commit=sha, outcome="pass")
    await ev(Kind.CHECKED)
    await ev(Kind.APPROVED, "reviewer-1", commit=sha, note="ok")
    await ev(Kind.READY)
    return tid


async def _run(root: Path, tasks: int) -> tuple[float, float, int]:
    repo = make_repo(root / "repo", BASE)
    (root / "factory.toml").write_text(
        f'[[products]]\nname = "p"\npath = "repo"\ntest_command = {PYTEST!r}\n')
    cfg = load_factory(root / "factory.toml")
    store = await Store.open(cfg.store_path)
    ws = Workspaces(cfg.worktrees_path)
    sandbox = Sandbox("bwrap")
    mq = MergeQueue(cfg, store, ws, sandbox)
    ids = [await _ready(store, ws, repo, n) for n in range(tasks)]
    t0 = time.perf_counter()
    await asyncio.gather(*(mq.land(t) for t in ids))
    queue_s = time.perf_counter() - t0
    landed = sum(1 for t in ids if store.task(t).state == TaskState.DONE)
    t0 = time.perf_counter()
    for _ in range(tasks):
        await sandbox.run(PYTEST, cwd=repo, writable=[], timeout_s=120, output_cap_bytes=64_000)
    floor_s = time.perf_counter() - t0
    await store.close()
    return queue_s, floor_s, landed


def measure(tasks: int = 10) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as d:
        queue_s, floor_s, landed = asyncio.run(_run(Path(d), tasks))
    rate = landed / queue_s * 3600
    floor = tasks / floor_s * 3600
    return {"tasks": tasks, "landed": landed, "merges_per_hour": rate, "floor_per_hour": floor, "ratio": rate / floor}


def main() -> int:
    m = measure()
    print(f"{m['landed']}/{m['tasks']} landed: {m['merges_per_hour']:,.0f} merges/hour; test command alone "
          f"{m['floor_per_hour']:,.0f}/hour; ratio {m['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
