"""A scripted reviewer reads the change with git inside its sandbox, end to end (issue 16).

The real orchestrator, the real SDK against the scripted model, the production bubblewrap
sandbox: the reviewer's `git log --oneline -3` and `git diff main...HEAD` answer with the
builder's commit, on a worktree the reviewer may only read.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import anthropic
from factory_kit import write_factory

from cockpit.agents.client import ModelClient
from cockpit.agents.scenarios import load_scenarios
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
from cockpit.config import load_factory
from cockpit.domain import TaskState
from cockpit.factory import commands
from cockpit.factory.orchestrator import Orchestrator
from cockpit.store import Store

SCENARIO = Path(__file__).parent / "scenarios" / "reviewer_git.toml"


def _tool_results(server: ScriptedModelServer, role: str) -> list[str]:
    bodies = [b for b in server.requests if f"ROLE: {role}" in str(b.get("system"))]
    longest = max(bodies, key=lambda b: len(b["messages"]))
    return [b["content"] for m in longest["messages"] if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"] if b.get("type") == "tool_result"]


def test_reviewer_runs_git_log_and_diff_in_its_sandbox():
    base = Path(tempfile.mkdtemp(prefix="cockpit-review-git-", dir="/var/tmp"))
    try:
        cfg = load_factory(write_factory(base / "factory"))
        with ScriptedModelServer(ScriptedModel(load_scenarios([SCENARIO]))) as server:
            async def go():
                store = await Store.open(cfg.store_path)
                client = anthropic.AsyncAnthropic(api_key="scripted", base_url=server.base_url, max_retries=0)
                try:
                    orch = Orchestrator(cfg, store, ModelClient(client, "scripted"))
                    tid = (await commands.add_task(store, product="shop", title="Add subtraction")).task_id
                    await orch.run(until_idle=True, timeout=120)
                    await store.flush()
                    return store.task(tid)
                finally:
                    await client.close()
                    await store.close()

            task = asyncio.run(go())
            log, diff, more = _tool_results(server, "reviewer")[:3]
        assert log.splitlines()[0] == "exit code 0", log
        assert "Add sub() for subtraction" in log and "initial" in log, log
        assert diff.splitlines()[0] == "exit code 0", diff
        assert "+def sub(a, b):" in diff and "+    return a - b" in diff and "--- a/calc.py" in diff, diff
        assert more.splitlines()[0] == "exit code 0" and "calc.py" in more, more
        assert task is not None and task.state == TaskState.DONE, task
    finally:
        shutil.rmtree(base, ignore_errors=True)
