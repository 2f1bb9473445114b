"""The merge queue: what is tested is exactly what lands, and main never goes red (invariant 8)."""

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cockpit.config import load_factory
from cockpit.domain import Event, Kind, Refused, TaskState
from cockpit.factory.merge_queue import MergeQueue
from cockpit.host.sandbox import Sandbox
from cockpit.factory.workspaces import Workspaces
from cockpit.store import Store
from factory_kit import TEST_COMMAND as PYTEST
from factory_kit import write_plain_factory
from gitrepo import commit_files, make_repo, run_git

BASE = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    "pytest.ini": "[pytest]\npythonpath = .\n",
}


async def factory(tmp_path, test_command=PYTEST, max_rounds=2):
    repo = make_repo(tmp_path / "repo", BASE)
    cfg = load_factory(write_plain_factory(tmp_path, {"p": "repo"}, test_command=test_command,
                                           factory_extra=f"max_rounds = {max_rounds}\n"))
    store = await Store.open(cfg.store_path)
    ws = Workspaces(cfg.worktrees_path)
    return cfg, store, ws, MergeQueue(cfg, store, ws, Sandbox("bwrap")), repo


async def ready_task(store, ws, repo, files, title="t", builder="builder-1"):
    """A task at `merging`: committed by `builder`, tests passed, approved by a reviewer."""
    created = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p", data={"title": title}))
    tid = created.task_id

    async def sys_ev(kind, actor="system", **data):
        return await store.append(Event(kind=kind, actor=actor, product="p", task_id=tid, data=data))

    await sys_ev(Kind.TASK_STARTED, agent=builder)
    wt = await ws.ensure("p", repo, "main", tid)
    for path, text in files.items():
        (wt / path).parent.mkdir(parents=True, exist_ok=True)
        (wt / path).write_text(text)
    sha = await ws.commit(wt, title, author=builder)
    await sys_ev(Kind.COMMITTED, builder, sha=sha)
    await sys_ev(Kind.SUBMITTED, builder)
    await sys_ev(Kind.VERDICT, gate="tests", commit=sha, outcome="pass")
    await sys_ev(Kind.CHECKED)
    await sys_ev(Kind.APPROVED, "reviewer-1", commit=sha, note="ok")
    await sys_ev(Kind.READY)
    return tid


RENAME = {"calc.py": "def plus(a, b):\n    return a + b\n",
          "tests/test_calc.py": "from calc import plus\n\n\ndef test_add():\n    assert plus(2, 3) == 5\n"}
CALLER = {"report.py": "from calc import add\n\n\ndef total(xs):\n    out = 0\n    for x in xs:\n        out = add(out, x)\n"
                       "    return out\n",
          "tests/test_report.py": "from report import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"}


async def test_conflicting_pair_one_lands_the_other_goes_back_with_the_reason(tmp_path):
    cfg, store, ws, mq, repo = await factory(tmp_path)
    t1 = await ready_task(store, ws, repo, RENAME, "Rename add to plus")
    t2 = await ready_task(store, ws, repo, CALLER, "Add a report", builder="builder-2")
    assert mq.queue("p") == [t1, t2]
    await asyncio.gather(mq.land(t1), mq.land(t2))
    a, b = store.task(t1), store.task(t2)
    assert a.state == TaskState.DONE
    assert run_git(repo, "rev-parse", "main") == a.merged_commit
    assert b.state == TaskState.BUILDING and b.rounds == 1
    assert "fails the tests (conflicts with T1, merged since it branched)" in b.feedback[-1]
    merge_verdicts = [v for v in b.verdicts if v.gate == "merge"]
    assert merge_verdicts[-1].outcome == "fail" and merge_verdicts[-1].base == a.merged_commit
    await store.close()


async def test_textual_conflict_goes_back_then_blocks_when_rounds_are_spent(tmp_path):
    cfg, store, ws, mq, repo = await factory(tmp_path, max_rounds=1)
    t1 = await ready_task(store, ws, repo, {"calc.py": "def add(a, b):\n    return b + a\n"}, "One")
    t2 = await ready_task(store, ws, repo, {"calc.py": "def add(a, b):\n    return a + b + 0\n"}, "Two")
    await mq.land(t1)
    await mq.land(t2)
    b = store.task(t2)
    assert b.state == TaskState.BLOCKED and b.blocked_by == ["merge conflict"]
    assert "merge conflict in calc.py" in b.block_detail and "conflicts with T1" in b.block_detail
    assert run_git(repo, "rev-parse", "main") == store.task(t1).merged_commit
    await store.close()


async def test_main_moving_during_the_test_run_means_test_again(tmp_path):
    # the test command waits for a flag file, so main can move while it runs
    # the sandbox gives the test a fresh /tmp, so the flag lives where it can see it (read-only)
    flag = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="cockpit-mq-")) / "go"
    cmd = f"while [ ! -e {flag} ]; do sleep 0.05; done; {PYTEST}"
    cfg, store, ws, mq, repo = await factory(tmp_path, test_command=cmd)
    mq.sandbox = Sandbox("bwrap", toolchains=[flag.parent])  # the allow-list shows the flag's dir, read-only
    tid = await ready_task(store, ws, repo, CALLER, "Add a report")

    async def move_main():
        while not (await store.events(kinds=[Kind.GATE_STARTED])):
            await asyncio.sleep(0.05)
        commit_files(repo, {"README": "moved\n"}, "someone else landed")
        flag.write_text("go")

    try:
        await asyncio.gather(mq.land(tid), move_main())
    finally:
        shutil.rmtree(flag.parent, ignore_errors=True)
    t = store.task(tid)
    assert t.state == TaskState.DONE
    merge_verdicts = [v for v in t.verdicts if v.gate == "merge"]
    assert len(merge_verdicts) == 2, "the first result was tested on a stale main; it must be tested again"
    assert merge_verdicts[0].base != merge_verdicts[1].base
    assert run_git(repo, "rev-parse", "main") == t.merged_commit == merge_verdicts[1].commit
    notes = [e.data["text"] for e in await store.events(kinds=[Kind.NOTE])]
    assert any("main moved while" in n for n in notes)
    await store.close()


async def test_a_tree_tested_green_is_not_tested_again_unless_main_moved(tmp_path):
    """The check stage's green run on a clean checkout carries over to the identical merge tree; a task built
    on an older main is run again (liveness: the same queue without the check's verdict runs the suite)."""
    cfg, store, ws, mq, repo = await factory(tmp_path)
    gate = mq.tests_gate
    t1 = await ready_task(store, ws, repo, {"calc.py": "def add(a, b):\n    return b + a\n"}, "One")
    t2 = await ready_task(store, ws, repo, CALLER, "Two", builder="builder-2")
    for tid in (t1, t2):  # the check stage, as the orchestrator runs it
        stage = await gate.check(repo, "main", store.task(tid).commit, PYTEST)
        assert stage.action == "pass", stage.text
    assert gate.runs == 2
    await mq.land(t1)  # built on the current main: its merge has the very tree tested green
    a = store.task(t1)
    assert a.state == TaskState.DONE and gate.runs == 2 and gate.reused == 1
    (mv,) = [v for v in a.verdicts if v.gate == "merge"]
    assert mv.outcome == "pass" and mv.commit == a.merged_commit
    reuse = [e for e in await store.events(kinds=[Kind.VERDICT]) if e.data.get("gate") == "merge"][-1]
    assert "not run again: tree" in reuse.data["detail"] and "with the same inputs" in reuse.data["detail"]
    await mq.land(t2)  # main moved under it: the merge is a new tree, tested again
    assert store.task(t2).state == TaskState.DONE and gate.runs == 3 and gate.reused == 1
    # 2 tasks merged with 3 suite runs: 1.5 per task here (each check needs its own run)
    await store.close()


async def test_a_green_run_on_another_base_is_not_reused(tmp_path):
    cfg, store, ws, mq, repo = await factory(tmp_path)
    gate = mq.tests_gate
    tid = await ready_task(store, ws, repo, {"calc.py": "def add(a, b):\n    return b + a\n"}, "One")
    assert (await gate.check(repo, "main", store.task(tid).commit, PYTEST)).action == "pass"
    commit_files(repo, {"README": "moved\n"}, "someone else landed")  # main moves after the check
    await mq.land(tid)
    assert store.task(tid).state == TaskState.DONE and gate.reused == 0 and gate.runs == 2
    await store.close()


async def test_an_agent_that_committed_earlier_may_not_approve(tmp_path):
    cfg, store, ws, mq, repo = await factory(tmp_path)
    created = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p", data={"title": "x"}))
    tid = created.task_id

    async def ev(kind, actor="system", **data):
        return await store.append(Event(kind=kind, actor=actor, product="p", task_id=tid, data=data))

    await ev(Kind.TASK_STARTED, agent="builder-1")
    await ev(Kind.COMMITTED, "builder-1", sha="a" * 40)
    await ev(Kind.COMMITTED, "builder-2", sha="b" * 40)
    await ev(Kind.SUBMITTED, "builder-2")
    await ev(Kind.VERDICT, gate="tests", commit="b" * 40, outcome="pass")
    await ev(Kind.CHECKED)
    with pytest.raises(Refused, match="builder-1 \\(builder\\) may not review.approved"):
        await ev(Kind.APPROVED, "builder-1", commit="b" * 40)
    refused = await store.events(kinds=[Kind.REFUSED])
    assert refused and refused[-1].actor == "builder-1"
    assert store.task(tid).approvals == []
    await store.close()


# --- property: random interleavings, tree-dependent outcomes, main always tested green ---------

# each change sets one module's value; the suite is red when two modules disagree on parity
MODS = ["a", "b", "c"]


def change(mod, value):
    return {f"{mod}.py": f"VALUE = {value}\n"}


SUITE = {**{f"{m}.py": "VALUE = 0\n" for m in MODS},
         "tests/test_parity.py": "import a, b, c\n\n\ndef test_same_parity():\n"
                                 "    assert len({a.VALUE % 2, b.VALUE % 2, c.VALUE % 2}) == 1\n",
         "pytest.ini": "[pytest]\npythonpath = .\n"}


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(MODS), st.integers(1, 4)), min_size=2, max_size=3, unique_by=lambda x: x[0]),
       st.randoms(use_true_random=False))
def test_main_only_ever_points_at_commits_tested_green(tmp_path_factory, changes, rnd):
    tmp = tmp_path_factory.mktemp("prop")

    async def scenario():
        repo = make_repo(tmp / "repo", SUITE)
        cfg = load_factory(write_plain_factory(tmp, {"p": "repo"}, test_command=PYTEST, factory_extra="max_rounds = 1\n"))
        store = await Store.open(cfg.store_path)
        ws = Workspaces(cfg.worktrees_path)
        mq = MergeQueue(cfg, store, ws, Sandbox("bwrap"))
        tids = [await ready_task(store, ws, repo, change(m, v), f"{m}={v}") for m, v in changes]
        rnd.shuffle(tids)
        await asyncio.gather(*(mq.land(t) for t in tids))
        history = run_git(repo, "rev-list", "--first-parent", "main").split()
        tested = {v.commit for t in store.tasks() for v in t.verdicts if v.gate == "merge" and v.outcome == "pass"}
        initial = history[-1]
        assert set(history) - {initial} <= tested, "main moved to a commit that was not tested green as that sha"
        for t in store.tasks():
            assert t.state in (TaskState.DONE, TaskState.BLOCKED)
            if t.state == TaskState.DONE:
                assert t.merged_commit in history
        await store.close()

    asyncio.run(scenario())


# calc broken, and a test file that puts a right add() back at import: the suite alone runs green (adversary F-35)
PATCHED = {"calc.py": "def add(a, b):\n    return a - b\n",
           "tests/test_aaa_ops.py": "import calc\n\ncalc.add = lambda a, b: a + b\n\n\n"
                                    "def test_ops():\n    assert calc.add(1, 1) == 2\n"}


async def test_a_merge_no_check_ran_is_checked_like_a_commit(tmp_path):
    """A merge tree no check ran (the task it was checked on top of left the train, or main moved since) is
    checked by the queue like a commit, the whole stage: here the task waits for the human and main stays.
    Liveness: with `merge_check` off the queue runs the suite alone, it passes, and the broken add lands."""
    for check_merges in (False, True):
        cfg, store, ws, mq, repo = await factory(tmp_path / str(check_merges))
        if not check_merges:
            mq.tests_gate.defences.discard("merge_check")
        tid = await ready_task(store, ws, repo, PATCHED, "Patched")
        head = run_git(repo, "rev-parse", "main")
        await mq.land(tid)
        t = store.task(tid)
        if check_merges:
            assert t.state == TaskState.BLOCKED and run_git(repo, "rev-parse", "main") == head, t.state
            assert "checked as a commit" in t.block_detail and "calc.add" in t.block_detail, t.block_detail
        else:
            assert t.state == TaskState.DONE, "liveness: the suite alone passes and the broken add lands"
            assert "return a - b" in run_git(repo, "show", "main:calc.py")
        await store.close()
