"""Orchestration overhead: time per agent turn spent outside the model call.

A 20-turn builder session on a real worktree (file tools, the store, reservations
and settlements, events) against the scripted model answering instantly. The
overhead per turn is the session's wall time minus the time inside model calls,
divided by the turns. It is compared with a turn's total under a realistic 2 s
model latency, measured in the same run: goal < 1%.

    python bench/orchestration.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anthropic  # noqa: E402

from cockpit.agents.loop import AgentSession  # noqa: E402
from cockpit.agents.roles import system_prompt  # noqa: E402
from cockpit.agents.scenarios import load_scenarios  # noqa: E402
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer  # noqa: E402
from cockpit.agents.tools import WorktreeTools  # noqa: E402
from cockpit.domain import Event, Kind  # noqa: E402
from cockpit.domain.prices import default_prices  # noqa: E402
from cockpit.host.sandbox import Sandbox  # noqa: E402
from cockpit.factory.task_tools import TaskToolbox  # noqa: E402
from cockpit.factory.workspaces import Workspaces  # noqa: E402
from cockpit.store import Store  # noqa: E402

GOAL = 0.01
LATENCY_S = 2.0


def _scenario(path: Path, turns: int) -> None:
    lines = ['[[script]]', 'role = "builder"', 'match = ["Overhead"]']
    for i in range(turns - 1):
        lines += ['[[script.turns]]', f'text = "Step {i}: reading."', '[[script.turns.tool_use]]',
                  'name = "read_file"', 'input = { path = "app.py" }']
    lines += ['[[script.turns]]', 'text = "Done."']
    path.write_text("\n".join(lines) + "\n")


async def _session(root: Path, server: ScriptedModelServer, turns: int) -> tuple[float, float, int]:
    repo = root / "repo"
    if not repo.exists():
        repo.mkdir()
        (repo / "app.py").write_text("x = 1\n" * 50)
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@x"}
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
            subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    store = await Store.open(root / f"c{time.monotonic_ns()}.db")
    ws = Workspaces(root / "wt")
    created = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p", data={"title": "Overhead"}))
    tid = created.task_id
    await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="p", task_id=tid, data={"agent": "builder-1"}))
    wt = await ws.ensure("p", repo, "main", f"{tid}-{time.monotonic_ns()}")
    client = anthropic.AsyncAnthropic(api_key="bench", base_url=server.base_url, max_retries=0)
    toolbox = TaskToolbox(role="builder", agent="builder-1", task_id=tid, product="p", worktree=wt,
                          worktree_tools=WorktreeTools(wt, Sandbox("bwrap")), store=store, workspaces=ws)
    session = AgentSession(agent="builder-1", role="builder", product="p", task_id=tid, client=client,
                           model="claude-sonnet-5-5", max_tokens=1024,
                           system=system_prompt(role="builder", agent="builder-1", product="p"),
                           toolbox=toolbox, store=store, prices=default_prices(), max_turns=turns + 1)
    t0 = time.perf_counter()
    result = await session.run(f"Task {tid}: Overhead")
    wall = time.perf_counter() - t0
    await store.flush()
    model_s = sum(e.data.get("seconds", 0.0) for e in await store.events(kinds=[Kind.MODEL_CALL]))
    await client.close()
    await store.close()
    return wall, model_s, result.turns


def measure(turns: int = 20, repeats: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        root = Path(d)
        _scenario(root / "s.toml", turns)
        overheads = []
        with ScriptedModelServer(ScriptedModel(load_scenarios([root / "s.toml"]))) as fast:
            for _ in range(repeats):
                wall, model_s, n = asyncio.run(_session(root, fast, turns))
                overheads.append((wall - model_s) / n)
        with ScriptedModelServer(ScriptedModel(load_scenarios([root / "s.toml"]), latency_s=LATENCY_S)) as slow:
            wall, model_s, n = asyncio.run(_session(root, slow, 3 if turns > 3 else turns))
        overheads.sort()
        per_turn = overheads[len(overheads) // 2]
        realistic_turn = wall / n
        return {"turns": turns, "overhead_s_per_turn": per_turn, "spread": (overheads[0], overheads[-1]),
                "realistic_turn_s": realistic_turn, "ratio": per_turn / realistic_turn}


def main() -> int:
    m = measure()
    print(f"overhead per turn: {m['overhead_s_per_turn'] * 1000:.1f} ms (spread {m['spread'][0] * 1000:.1f}-"
          f"{m['spread'][1] * 1000:.1f}); turn with {LATENCY_S:.0f} s model latency: {m['realistic_turn_s']:.2f} s; "
          f"ratio {m['ratio'] * 100:.2f}% (goal < {GOAL * 100:.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
