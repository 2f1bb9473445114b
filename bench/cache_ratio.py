"""Cache read ratio of a 20-turn scripted builder session: the share of input tokens read from the prompt cache.

Everything real but the model: a git repo and its worktree, the builder's toolbox
(file tools and sandboxed commands), the store, the agent loop with its cache
breakpoints, the SDK over HTTP to the scripted model, whose prompt cache accounts
writes and reads the way the API does. Goal: >= 0.70.

    python bench/cache_ratio.py          # prints the ratio and the token counts
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

GOAL = 0.70

_FILES = {
    "calc/__init__.py": "",
    "calc/ops.py": '"""Arithmetic."""\n\n\ndef add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n',
    "calc/fmt.py": '"""Formatting."""\n\n\ndef money(x):\n    return f"{x:.2f}"\n',
    "tests/test_ops.py": "from calc.ops import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
                         "def test_mul():\n    assert mul(2, 3) == 6\n",
    "README.md": "# calc\n\nSmall arithmetic helpers used by the billing service.\n",
}
_TEST = "PYTHONDONTWRITEBYTECODE=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"


def _turns(n: int) -> list[dict[str, Any]]:
    """A builder at work: explore, edit, test, edit again; the last turn only talks (the session ends)."""
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("Let me see the layout first.", "list_files", {}),
        ("Reading the operations module.", "read_file", {"path": "calc/ops.py"}),
        ("And its tests.", "read_file", {"path": "tests/test_ops.py"}),
        ("Where is formatting done?", "search_text", {"pattern": "def "}),
        ("Adding subtraction.", "edit_file", {"path": "calc/ops.py", "old": "def mul(a, b):",
                                              "new": "def sub(a, b):\n    return a - b\n\n\ndef mul(a, b):"}),
        ("A test for it.", "write_file", {"path": "tests/test_sub.py", "content":
                                          "from calc.ops import sub\n\n\ndef test_sub():\n    assert sub(5, 3) == 2\n"}),
        ("Running the tests.", "run_command", {"command": _TEST}),
        ("Now division, with a clear error on zero.", "edit_file", {
            "path": "calc/ops.py", "old": "def mul(a, b):",
            "new": "def div(a, b):\n    if b == 0:\n        raise ZeroDivisionError('b is zero')\n    return a / b\n\n\n"
                   "def mul(a, b):"}),
        ("Its tests.", "write_file", {"path": "tests/test_div.py", "content":
                                      "import pytest\n\nfrom calc.ops import div\n\n\ndef test_div():\n"
                                      "    assert div(6, 3) == 2\n\n\ndef test_zero():\n    with pytest.raises("
                                      "ZeroDivisionError):\n        div(1, 0)\n"}),
        ("Checking the formatting helper.", "read_file", {"path": "calc/fmt.py"}),
        ("Negative amounts need a sign in front.", "edit_file", {
            "path": "calc/fmt.py", "old": '    return f"{x:.2f}"', "new": '    return f"{x:+.2f}" if x < 0 else f"{x:.2f}"'}),
        ("A test for the formatting.", "write_file", {"path": "tests/test_fmt.py", "content":
                                                      "from calc.fmt import money\n\n\ndef test_money():\n"
                                                      "    assert money(2) == '2.00'\n    assert money(-2) == '-2.00'\n"}),
        ("Running everything.", "run_command", {"command": _TEST}),
        ("Reading the module once more as a whole.", "read_file", {"path": "calc/ops.py"}),
        ("Any leftover TODOs?", "search_text", {"pattern": "TODO"}),
        ("The README should mention the new operations.", "edit_file", {
            "path": "README.md", "old": "helpers used by the billing service.",
            "new": "helpers used by the billing service: add, sub, mul, div, money."}),
        ("Final test run.", "run_command", {"command": _TEST}),
        ("Listing what changed.", "list_files", {"pattern": "*.py"}),
        ("Committing.", "commit", {"message": "Add sub and div, signed money\n\nWith tests."}),
    ]
    turns = [{"text": text, "tool_use": [{"name": name, "input": inp}]} for text, name, inp in steps[: n - 1]]
    turns.append({"text": "Done: sub, div and signed money, with tests; committed."})
    return turns


def _git(cwd: Path, *args: str) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@cockpit.local",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@cockpit.local"}
    subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def run_session(directory: Path, turns: int = 20) -> dict[str, Any]:
    """One builder session of `turns` model calls; returns the summed usage and the cache read ratio."""
    import anthropic

    from cockpit.agents.loop import AgentSession
    from cockpit.agents.roles import system_prompt
    from cockpit.agents.scenarios import Script
    from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
    from cockpit.agents.tools import WorktreeTools
    from cockpit.demo.build import default_rules_dir
    from cockpit.domain.events import Event, Kind
    from cockpit.domain.prices import default_prices
    from cockpit.factory.rules import load_rules
    from cockpit.host.sandbox import Sandbox
    from cockpit.factory.task_tools import TaskToolbox
    from cockpit.factory.workspaces import Workspaces
    from cockpit.store import Store

    repo = directory / "repo"
    for rel, text in _FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "calc")

    title = "Add subtraction and division"
    script = Script.model_validate({"name": "bench builder", "role": "builder", "match": [title], "turns": _turns(turns)})
    store = await Store.open(directory / "cockpit.db")
    server = ScriptedModelServer(ScriptedModel([script]))
    server.start()
    client = anthropic.AsyncAnthropic(api_key="scripted", base_url=server.base_url, max_retries=0)
    try:
        tid = (await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="calc",
                                        data={"title": title}))).task_id
        await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="calc", task_id=tid,
                                 data={"agent": "builder-1"}))
        ws = Workspaces(directory / "worktrees")
        wt = await ws.ensure("calc", repo, "main", tid)
        toolbox = TaskToolbox(role="builder", agent="builder-1", task_id=tid, product="calc", worktree=wt,
                              worktree_tools=WorktreeTools(wt, Sandbox("bwrap")), store=store, workspaces=ws,
                              main_branch="main")
        rules = load_rules(default_rules_dir(), "builder", "calc")
        session = AgentSession(agent="builder-1", role="builder", product="calc", task_id=tid, client=client,
                               model="claude-sonnet-4-6", max_tokens=8192, toolbox=toolbox, store=store,
                               system=system_prompt(role="builder", agent="builder-1", product="calc", rules=rules.text),
                               prices=default_prices(), max_turns=turns)
        result = await session.run(f"Task {tid} on product 'calc': {title}\n\nAdd sub and div to calc.ops, "
                                   "with tests; format negative money with its sign.")
        await store.flush()
        (inp, created, read, calls) = (await store.query(
            "SELECT SUM(input_tokens), SUM(cache_creation_tokens), SUM(cache_read_tokens), COUNT(*) FROM ledger"))[0]
        results = await store.events(kinds=[Kind.AGENT_TOOL_RESULT])
        tool_errors = [(e.data["name"], e.data["summary"]) for e in results if e.data["is_error"]]
    finally:
        await client.close()
        server.stop()
        await store.close()
    total = inp + created + read
    return {"turns": result.turns, "calls": calls, "tool_calls": len(results), "tool_errors": tool_errors,
            "input_tokens": inp, "cache_creation_tokens": created,
            "cache_read_tokens": read, "cache_read_ratio": read / total if total else 0.0}


def cache_read_ratio(turns: int = 20) -> float:
    """The share of input tokens read from the prompt cache over a `turns`-turn builder session."""
    return measure(turns)["cache_read_ratio"]


def measure(turns: int = 20) -> dict[str, Any]:
    # outside /tmp: the sandbox mounts a fresh tmpfs there, so the worktree would be invisible to run_command
    with tempfile.TemporaryDirectory(prefix="cockpit-bench-cache-", dir=os.environ.get("BENCH_TMP", "/var/tmp")) as d:
        return asyncio.run(run_session(Path(d), turns))


def bench_rows() -> dict[str, Any]:
    """The row `make bench` prints (bench/__main__.py)."""
    r = measure()
    return {**r, "rows": [{
        "what": f"prompt cache read ratio, {r['calls']}-turn builder session",
        "figure": f"{r['cache_read_ratio']:.1%}", "goal": f">= {GOAL:.0%} of input tokens",
        "anchor": f"written {r['cache_creation_tokens']:,}, uncached {r['input_tokens']:,}",
        "ratio": f"{r['cache_read_ratio']:.2f}", "ok": r["cache_read_ratio"] >= GOAL and not r["tool_errors"]}]}


def main() -> int:
    r = measure()
    print(f"cache read ratio: {r['cache_read_ratio']:.1%} of input tokens over a {r['calls']}-call builder session "
          f"(goal >= {GOAL:.0%}; read {r['cache_read_tokens']}, written {r['cache_creation_tokens']}, "
          f"uncached {r['input_tokens']})")
    return 0 if r["cache_read_ratio"] >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
