"""A defect blocks a change only if it is the change's: it fails on the commit and not where the change started.

The attack (adversary session B-08): on a correct, approved change a breaker reports a reproduction that
fails everywhere (`assert 0`, a test that always fails, a command that hangs). The cockpit re-ran it on the
commit, saw it fail, opened the defect; no commit could ever close it, so the task burned its rounds and
blocked for the human. Now the same reproduction also runs on the change's merge base with main: one that
fails there too is refused with the reason. Liveness: the breaker's toolbox without the base run (the old
judgement) opens each one. Real git, bwrap, SQLite, pytest; the tool call the breaker makes.
"""

from __future__ import annotations

import sys

import pytest
from gitrepo import make_repo

from cockpit.agents.tools import WorktreeTools
from cockpit.domain import Event, Kind
from cockpit.factory.defects import base_of, reproduce
from cockpit.factory.task_tools import TaskToolbox
from cockpit.factory.workspaces import Workspaces
from cockpit.host.sandbox import Sandbox
from cockpit.store import Store

PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
FILES = {"calc/__init__.py": "def add(a, b):\n    return a + b\n", "pytest.ini": "[pytest]\npythonpath = .\n",
         "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"}
SUB_OK = "def sub(a, b):\n    return a - b\n"
SUB_BUG = "def sub(a, b):\n    return b - a\n"
ADD_BROKEN = "def add(a, b):\n    return a + b + (1 if a > 100 else 0)\n"


async def _breaker(tmp_path, change: dict[str, str], *, with_base: bool, timeout_s: float):
    repo = make_repo(tmp_path / "repo", FILES)
    store = await Store.open(tmp_path / "cockpit.db")
    ws = Workspaces(tmp_path / "worktrees")
    tid = (await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p",
                                    data={"title": "Subtraction"}))).task_id

    async def sys_ev(kind, actor="system", **data):
        return await store.append(Event(kind=kind, actor=actor, product="p", task_id=tid, data=data))

    await sys_ev(Kind.TASK_STARTED, agent="builder-1")
    wt = await ws.ensure("p", repo, "main", tid)
    for rel, text in change.items():
        (wt / rel).write_text(text)
    sha = await ws.commit(wt, "the change", author="builder-1")
    await sys_ev(Kind.COMMITTED, "builder-1", sha=sha)
    await sys_ev(Kind.SUBMITTED, "builder-1")
    await sys_ev(Kind.VERDICT, gate="tests", commit=sha, outcome="pass")
    await sys_ev(Kind.CHECKED)

    async def repro(commit, kind, body):
        return await reproduce(Sandbox("bwrap"), repo, tmp_path / "scratch", commit, kind, body, timeout_s=timeout_s,
                               output_cap_bytes=64_000, test_command=PYTEST)

    async def repro_base(commit, kind, body):  # what the orchestrator hands the breaker's toolbox
        base = await base_of(repo, commit, "main")
        return None if base is None else await repro(base, kind, body)

    scratch = tmp_path / "breaker-scratch"
    scratch.mkdir()
    tools = WorktreeTools(wt, Sandbox("bwrap"), scratch=scratch, worktree_writable=False)
    box = TaskToolbox(role="breaker", agent="breaker-1", task_id=tid, product="p", worktree=wt, worktree_tools=tools,
                      store=store, workspaces=ws, commit=sha, reproduce=repro,
                      reproduce_base=repro_base if with_base else None)
    return box, store, tid


async def _report(tmp_path, change, reproduction, *, with_base, timeout_s=60.0):
    box, store, tid = await _breaker(tmp_path, change, with_base=with_base, timeout_s=timeout_s)
    try:
        out = await box.call("report_defect", {"title": "found something", "reproduction": reproduction})
        await store.flush()
        return out, store.task(tid).open_defects
    finally:
        await store.close()


EVERYWHERE = {
    "assert_0": "python -c 'import calc; assert 0'",
    "hangs": "sleep 30",
    "always_failing_test": "from calc import add\n\n\ndef test_memory():\n    assert add(1, 1) == 3\n",
}


@pytest.mark.parametrize("name", sorted(EVERYWHERE))
async def test_a_reproduction_that_fails_everywhere_is_refused(tmp_path, name):
    change = {"calc/sub.py": SUB_OK, "tests/test_sub.py": "from calc.sub import sub\n\n\ndef test_sub():\n"
                                                          "    assert sub(5, 3) == 2\n"}
    body = EVERYWHERE[name]
    timeout_s = 2.0 if name == "hangs" else 60.0  # the hang is cut at 2 s; the others get a loaded machine's time
    out, opened = await _report(tmp_path / "live", change, body, with_base=False, timeout_s=timeout_s)
    assert not out.is_error and opened == ["D1"], f"liveness: the old judgement opens it:\n{out.text}"
    out, opened = await _report(tmp_path / "now", change, body, with_base=True, timeout_s=timeout_s)
    assert out.is_error and opened == [], out.text
    assert "too, the main commit this change started from" in out.text and "shows no defect of this change" in out.text


async def test_a_regression_is_opened(tmp_path):
    out, opened = await _report(tmp_path, {"calc/__init__.py": ADD_BROKEN},
                                "python -c 'from calc import add; assert add(101, 1) == 102'", with_base=True)
    assert not out.is_error and opened == ["D1"], out.text


@pytest.mark.parametrize("kind", ["command", "test_file"])
async def test_a_defect_in_new_code_is_opened(tmp_path, kind):
    """On main the new module does not exist (an import error, a file that does not collect): that failure
    is not the same failure, so the defect belongs to the change."""
    body = ("python -c 'from calc.sub import sub; assert sub(5, 3) == 2'" if kind == "command" else
            "from calc.sub import sub\n\n\ndef test_sub():\n    assert sub(5, 3) == 2\n")
    out, opened = await _report(tmp_path, {"calc/sub.py": SUB_BUG}, body, with_base=True)
    assert not out.is_error and opened == ["D1"], out.text
