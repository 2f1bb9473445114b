"""The team at work, end to end on one small product: real orchestrator, git, bwrap, SQLite and SDK.

- the breaker finds a defect the reviewer missed; the builder fixes it (and is refused when it
  tries to approve its own fix); the system closes the defect; an independent approval lands it;
- a reviewer who keeps requesting changes sends the task to the human after max_rounds, with history;
- a builder that deletes a test file blocks for the human ("tests removed"); only an override lands it;
- a paused product or builder takes no new work; a stopped agent leaves no process behind.
"""

import asyncio
import os
import signal
from pathlib import Path

from cockpit.config import load_factory
from cockpit.domain import Event, Kind, TaskState
from cockpit.factory.commands import add_task, approve_override
from cockpit.factory.runtime import open_factory
from cockpit.factory.status import status
from factory_kit import write_factory
from gitrepo import make_repo, run_git

FILES = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    "tests/test_more.py": "from calc import add\n\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n",
}

SCENARIOS = """
[[script]]
name = "builder: divide, round 2"
role = "builder"
match = ["Add division", "Round: 2"]
[[script.turns]]
[[script.turns.tool_use]]
name = "write_file"
input = { path = "calc.py", content = '''def add(a, b):
    return a + b


def divide(a, b):
    return None if b == 0 else a / b
''' }
[[script.turns]]
[[script.turns.tool_use]]
name = "commit"
input = { message = "divide by zero is None" }
[[script.turns]]
text = "Approving my own fix {{sha}}."
[[script.turns.tool_use]]
name = "approve"
input = { commit = "{{sha}}", note = "mine, and fine" }
[[script.turns]]
[[script.turns.tool_use]]
name = "submit"
input = {}

[[script]]
name = "builder: divide, round 1"
role = "builder"
match = ["Add division"]
[[script.turns]]
[[script.turns.tool_use]]
name = "write_file"
input = { path = "calc.py", content = "def add(a, b):\\n    return a + b\\n\\n\\ndef divide(a, b):\\n    return a / b\\n" }
[[script.turns.tool_use]]
name = "write_file"
input = { path = "tests/test_divide.py", content = '''from calc import divide


def test_divide():
    assert divide(6, 3) == 2
''' }
[[script.turns]]
[[script.turns.tool_use]]
name = "commit"
input = { message = "Add division" }
[[script.turns]]
[[script.turns.tool_use]]
name = "submit"
input = {}

[[script]]
name = "reviewer: divide"
role = "reviewer"
match = ["Add division"]
[[script.turns]]
text = "Approving {{sha}}."
[[script.turns.tool_use]]
name = "approve"
input = { commit = "{{sha}}", note = "ok" }

[[script]]
name = "breaker: divide, round 1"
role = "breaker"
match = ["Add division", "Round: 1"]
[[script.turns]]
[[script.turns.tool_use]]
name = "report_defect"
input = { title = "divide by zero crashes", reproduction = '''from calc import divide


def test_zero():
    assert divide(1, 0) is None
''', fix = { "calc.py" = '''def add(a, b):
    return a + b


def divide(a, b):
    return None if b == 0 else a / b
''' } }
[[script.turns]]
text = "Reported."

[[script]]
name = "builder: nitpicked"
role = "builder"
match = ["Nitpicked"]
[[script.turns]]
[[script.turns.tool_use]]
name = "run_command"
input = { command = "echo '# round' >> calc.py" }
[[script.turns]]
[[script.turns.tool_use]]
name = "commit"
input = { message = "another try" }
[[script.turns]]
[[script.turns.tool_use]]
name = "submit"
input = {}

[[script]]
name = "reviewer: nitpicker"
role = "reviewer"
match = ["Nitpicked"]
[[script.turns]]
[[script.turns.tool_use]]
name = "request_changes"
input = { note = "call it plus", comments = [{ file = "calc.py", line = 1, comment = "rename" }] }

[[script]]
name = "builder: drops a test"
role = "builder"
match = ["Drop a test"]
[[script.turns]]
[[script.turns.tool_use]]
name = "run_command"
input = { command = "rm tests/test_more.py" }
[[script.turns]]
[[script.turns.tool_use]]
name = "commit"
input = { message = "that test was in the way" }
[[script.turns]]
[[script.turns.tool_use]]
name = "submit"
input = {}

[[script]]
name = "builder: hangs"
role = "builder"
match = ["Hang"]
[[script.turns]]
[[script.turns.tool_use]]
name = "run_command"
input = { command = "sleep 4242.4242 & sleep 4343.4343; echo never" }

[[script]]
name = "breaker: nothing"
role = "breaker"
[[script.turns]]
text = "Nothing found."
"""


def factory(tmp_path: Path):
    make_repo(tmp_path / "f" / "products" / "calc", FILES)
    return load_factory(write_factory(tmp_path / "f", products=("calc",), scenarios=SCENARIOS))


def by_kind(events, kind):
    return [e for e in events if e.kind == kind]


async def test_breaker_defect_fixed_then_independent_approval_lands_it(tmp_path):
    cfg = factory(tmp_path)
    async with open_factory(cfg) as f:
        tid = (await add_task(f.store, product="calc", title="Add division")).task_id
        await f.orchestrator.run(until_idle=True, timeout=180)
        await f.store.flush()
        t = f.store.task(tid)
        events = await f.store.events(task_id=tid)
        st = await status(cfg, f.store)

    assert t.state == TaskState.DONE, (t.state, t.blocked_by, t.block_detail)
    first, second = t.commits
    (opened,) = by_kind(events, Kind.DEFECT_OPENED)
    (closed,) = by_kind(events, Kind.DEFECT_CLOSED)
    assert opened.actor.startswith("breaker-") and opened.data["commit"] == first
    assert closed.actor == "system" and closed.data == {"defect": "D1", "commit": second, "exit_code": 0,
                                                         "detail": closed.data["detail"]}
    # reviewer and breaker worked the same commit at the same time: both started before either finished
    r1 = [e for e in events if e.kind in (Kind.AGENT_STARTED, Kind.AGENT_FINISHED) and e.data.get("agent", "")
          .startswith(("reviewer-", "breaker-"))][:4]
    assert [e.kind for e in r1[:2]] == [Kind.AGENT_STARTED, Kind.AGENT_STARTED]
    # the defect's text went back to the builder; its self-approval was refused and shown
    assert any("divide by zero crashes" in fb for fb in t.feedback)
    (refused,) = by_kind(events, Kind.REFUSED)
    assert refused.actor == t.assignee and refused.data["kind"] == "tool:approve"
    # the approval that counted is of the latest commit, by someone who pushed none
    assert [a.commit for a in t.approvals] == [first, second] and t.approvals[-1].actor not in t.authors
    (task_st,) = [x for p in st["products"] for x in p["tasks"] if x["id"] == tid]
    assert task_st["defects"][0]["title"] == "divide by zero crashes" and task_st["defects"][0]["state"] == "closed"
    gates = [(v["gate"], v["commit"], v["outcome"]) for v in task_st["verdicts"]]
    assert gates[:4] == [("tests", first, "pass"), ("guard", first, "pass"), ("tests", second, "pass"),
                         ("guard", second, "pass")]
    # counted during the gate's own run, compared with the main it was built from
    assert [v.detail for v in t.verdicts if v.gate == "guard"][-1].startswith("3 tests collected (main ")
    assert run_git(cfg.product_path("calc"), "rev-parse", "main") == t.merged_commit


async def test_changes_requested_every_round_block_for_the_human_with_history(tmp_path):
    cfg = factory(tmp_path)
    async with open_factory(cfg) as f:
        tid = (await add_task(f.store, product="calc", title="Nitpicked")).task_id
        await f.orchestrator.run(until_idle=True, timeout=180)
        t = f.store.task(tid)
    assert t.state == TaskState.BLOCKED and t.blocked_by == ["review"] and t.rounds == 2
    assert t.block_detail.startswith("still not passing after 2 rounds. Last feedback:\nreviewer-")
    assert "calc.py:1: rename" in t.block_detail
    history = t.block_detail.split("History:", 1)[1]
    assert history.count("[review] reviewer-") == 2 and "Verdicts:" in history


async def test_a_deleted_test_blocks_for_the_human_and_only_an_override_lands_it(tmp_path):
    cfg = factory(tmp_path)
    async with open_factory(cfg) as f:
        tid = (await add_task(f.store, product="calc", title="Drop a test")).task_id
        await f.orchestrator.run(until_idle=True, timeout=180)
        t = f.store.task(tid)
        assert t.state == TaskState.BLOCKED and t.blocked_by == ["tests removed"], t.block_detail
        assert "test files deleted: tests/test_more.py" in t.block_detail
        assert [(v.gate, v.outcome.value) for v in t.verdicts] == [("guard", "fail")]  # nothing of it ran
        await f.store.append(Event(kind=Kind.RETRY, actor="human:you", product="calc", task_id=tid))
        await f.orchestrator.run(until_idle=True, timeout=120)
        assert f.store.task(tid).blocked_by == ["tests removed"], "a retry runs the same guard again"
        await approve_override(f.store, tid, actor="human:you", note="that test was obsolete, I checked")
        await f.orchestrator.run(until_idle=True, timeout=120)
        t = f.store.task(tid)
    assert t.state == TaskState.DONE and t.overrides[-1].actor == "human:you"


async def test_a_paused_product_or_builder_takes_no_new_work(tmp_path):
    cfg = factory(tmp_path)
    async with open_factory(cfg) as f:
        o = f.orchestrator
        o.pause_product("calc")
        tid = (await add_task(f.store, product="calc", title="Add division")).task_id
        await o.run(until_idle=True, timeout=30)
        assert f.store.task(tid).state == TaskState.QUEUED
        o.resume_product("calc")
        await f.store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="calc", task_id=tid,
                                   data={"agent": "builder-7"}))
        o.pause_agent("builder-7")
        await o.run(until_idle=True, timeout=30)
        assert f.store.task(tid).state == TaskState.BUILDING
        assert await f.store.events(kinds=[Kind.AGENT_STARTED]) == []


def _marked(under: Path | None = None) -> list[int]:
    """Host pids of the hanging builder's sleeps (the sandbox's pid namespace is visible from outside).

    Only those working in a directory `under` this test's tmp_path: another copy of the suite running
    beside this one (a loaded CI machine, a second checkout) runs the same scenario with its own sleeps."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                cwd = os.readlink(f"/proc/{entry}/cwd") if under is not None else ""
            except OSError:
                continue
            if (b"4242.4242" in cmd or b"4343.4343" in cmd) and cwd.startswith(str(under or "")):
                pids.append(int(entry))
    return pids


async def test_a_stopped_agent_is_cancelled_recorded_and_leaves_no_process(tmp_path):
    cfg = factory(tmp_path)
    async with open_factory(cfg) as f:
        o = f.orchestrator
        sub = f.store.subscribe()
        tid = (await add_task(f.store, product="calc", title="Hang")).task_id
        run = asyncio.create_task(o.run(until_idle=True, timeout=120))
        try:
            while not any(e.kind == Kind.AGENT_TOOL and e.data.get("name") == "run_command" for e in [await sub.get()]):
                pass
            for _ in range(600):  # both sleeps up (the command started inside the sandbox)
                if len(_marked(tmp_path)) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert len(_marked(tmp_path)) >= 2
            (agent,) = o.agent_tasks
            assert await o.stop_agent(agent, by="human:you")
            # SIGKILLed with their sandbox: gone once the kernel has torn the namespace down (no orphan lingers)
            for _ in range(600):  # 30 s: a loaded machine once took longer than 10 s to reap the namespace
                if not _marked(tmp_path):
                    break
                await asyncio.sleep(0.05)
            assert _marked(tmp_path) == [], "the stopped agent's processes are gone"
            await run
        finally:
            run.cancel()
            for pid in _marked(tmp_path):
                os.kill(pid, signal.SIGKILL)
        t = f.store.task(tid)
        (stopped,) = await f.store.events(kinds=[Kind.AGENT_STOPPED])
    assert (stopped.actor, stopped.task_id, stopped.data["agent"]) == ("human:you", tid, agent)
    assert t.state == TaskState.BLOCKED and t.blocked_by == ["stopped"] and agent in t.block_detail
    assert not o.agent_tasks and await o.stop_agent(agent) is False
