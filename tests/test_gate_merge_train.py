"""A merge train: a task checked while another of its product is checked green and not landed yet is tested on
top of it, lands after it, and the merge queue reuses that run (each tree tested once).

Liveness: with the train off (`gate.train = False`), the second task is checked alone and the queue runs the
suite again once the first has landed. A commit that does not pass on top of the task ahead is judged on main
alone (the task ahead may never land), and the run on the train is recorded beside it. The queue's wait is the
domain's `train_waits_for`: it waits only while each task ahead is still on its way with the commit stacked on.
Real repos, bwrap, pytest; the domain on real events.
"""

from __future__ import annotations

import pytest
from gate_kit import CALC_TESTS, PYTEST, branch, gate, repo  # noqa: F401  (fixtures)
from gitrepo import run_git

from cockpit.domain import Event, Kind, TaskState, apply, create
from cockpit.domain.tasks import train_ahead, train_waits_for
from cockpit.factory.green_trees import GreenTrees
from cockpit.factory.workspaces import Workspaces

FIRST = {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
         "tests/test_sub.py": "from calc import sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n"}
SECOND = {"tests/test_twice.py": "from calc import add\n\n\ndef test_twice():\n    assert add(add(1, 1), 1) == 3\n"}


@pytest.fixture
def main_back(repo):  # noqa: F811
    head = run_git(repo, "rev-parse", "main")
    yield
    run_git(repo, "reset", "-q", "--hard", head)


async def _land(repo, gate, ws, sha, title):  # noqa: F811
    """The merge queue's landing of `sha` (cockpit.factory.merge_queue): merge, run or reuse, move main."""
    pm = await ws.prepare_merge(repo, "main", sha, f"Merge {title}")
    assert pm.merged is not None, pm.detail
    try:
        runs = gate.runs
        res = await gate.merge_run(repo, PYTEST, pm.merged, pm.base)
        assert res.passed, res.detail()
        moved = await ws.advance(repo, "main", pm.merged, pm.base)
        assert moved.ok, moved.detail
        return res, gate.runs - runs
    finally:
        await ws.discard(repo, pm.scratch)


async def _two_tasks(repo, gate, tmp_path, *, train):  # noqa: F811
    gate.greens, gate.train = GreenTrees(), train
    try:
        first, second = branch(repo, FIRST), branch(repo, SECOND)
        one = await gate.check(repo, "main", first, PYTEST)
        two = await gate.check(repo, "main", second, PYTEST, ahead=[("T1", first)])
        assert one.action == two.action == "pass", (one.text, two.text)
        ws = Workspaces(tmp_path / f"wt-{train}")
        _, ran_first = await _land(repo, gate, ws, first, "T1")
        res, ran_second = await _land(repo, gate, ws, second, "T2")
        return two, ran_first, ran_second, res, first
    finally:
        gate.train = True


async def test_the_task_behind_is_tested_on_top_and_its_landing_reuses_that_run(
        repo, gate, main_back, tmp_path):  # noqa: F811
    two, ran_first, ran_second, res, first = await _two_tasks(repo, gate, tmp_path, train=False)
    assert ran_first == 0 and ran_second == 1, "liveness: checked alone, the second runs again once the first landed"
    run_git(repo, "reset", "-q", "--hard", "HEAD~2")  # main as it was: both landings undone
    two, ran_first, ran_second, res, first = await _two_tasks(repo, gate, tmp_path, train=True)
    assert ran_first == 0 and ran_second == 0 and res.reused_from, res.detail()
    tests, guard = two.verdicts
    assert tests["ahead"] == [["T1", first]] and tests["onto"] == first and tests["tested"] != first
    assert "tested as it would land after T1" in guard["detail"]
    # judged against main with T1 landed: T1's test is one of "main's" tests for it
    assert guard["detail"].startswith(f"5 tests collected (main {first[:12]}: 4)"), guard["detail"]


async def test_a_commit_that_fails_on_top_of_the_task_ahead_is_judged_on_main_alone(
        repo, gate, main_back):  # noqa: F811
    # the task ahead pins calc's names; the second adds mul(): each passes alone, on top of the first it fails
    gate.greens = GreenTrees()
    first = branch(repo, {"tests/test_api.py": "import calc\n\n\ndef test_only_add():\n"
                                               "    assert not hasattr(calc, 'mul')\n"})
    second = branch(repo, {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
                           "tests/test_mul.py": "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"})
    assert (await gate.check(repo, "main", first, PYTEST)).action == "pass"
    runs = gate.runs
    stage = await gate.check(repo, "main", second, PYTEST, ahead=[("T1", first)])
    assert stage.action == "pass", stage.text
    train, tests, guard = stage.verdicts
    assert train["gate"] == "train" and train["outcome"] == "fail" and train["ahead"] == [["T1", first]]
    assert "on top of T1" in train["detail"] and "test_only_add" in train["detail"], train["detail"]
    assert "ahead" not in tests and "onto" not in tests and tests["outcome"] == "pass"
    assert gate.runs - runs == 2  # the run on the train and the run alone: both counted


def _ev(task, kind, actor="system", **data):
    return Event(kind=kind, actor=actor, product="shop", task_id=task, data=data)


def _checked(task, sha, *, ahead=()):
    t = create(_ev(task, Kind.TASK_CREATED, "human:you", title=task))
    t = apply(t, _ev(task, Kind.TASK_STARTED, agent="builder-1"))
    t = apply(t, _ev(task, Kind.COMMITTED, "builder-1", sha=sha))
    t = apply(t, _ev(task, Kind.SUBMITTED, "builder-1"))
    t = apply(t, _ev(task, Kind.VERDICT, gate="tests", commit=sha, outcome="pass"))
    t = apply(t, _ev(task, Kind.VERDICT, gate="guard", commit=sha, outcome="pass", ahead=[list(a) for a in ahead]))
    return apply(t, _ev(task, Kind.CHECKED))


def test_the_queue_waits_only_while_each_task_ahead_is_still_on_its_way():
    t1 = _checked("T1", "a1")
    assert t1.state == TaskState.REVIEWING and train_ahead(_checked("T2", "b1"), [t1]) == [("T1", "a1")]
    t2 = _checked("T2", "b1", ahead=[("T1", "a1")])
    tasks = {"T1": t1}
    assert train_waits_for(t2, tasks.get) == ["T1"]  # T1 in review with the commit T2 was tested on
    tasks["T1"] = apply(t1, _ev("T1", Kind.SENT_BACK, reason="changes requested"))
    assert train_waits_for(t2, tasks.get) is None  # T1 left the train: T2 lands on main as it is, tested there
    tasks["T1"] = t1.model_copy(update={"commit": "a2"})
    assert train_waits_for(t2, tasks.get) is None  # a new commit of T1: not the tree T2 was tested on
    tasks["T1"] = t1.model_copy(update={"state": TaskState.DONE})
    assert train_waits_for(t2, tasks.get) == []  # landed: T2's merge is the tree its check ran
    assert train_waits_for(_checked("T3", "c1"), tasks.get) == []  # checked alone: nothing to wait for


async def test_a_task_that_failed_on_top_of_the_one_ahead_is_not_run_again_once_that_one_landed(
        repo, gate, main_back, tmp_path):  # noqa: F811
    """The train's red run is the tree the queue merges once the task ahead landed as checked: the queue sends
    the task back without running it again. Liveness: with reds not reused, the same failure costs a run."""
    for reuse in (False, True):
        gate.greens, gate.reds, gate.reuse_reds = GreenTrees(), {}, reuse
        first = branch(repo, {"tests/test_api.py": "import calc\n\n\ndef test_only_add():\n"
                                                   "    assert not hasattr(calc, 'mul')\n"})
        second = branch(repo, {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
                               "tests/test_mul.py": "from calc import mul\n\n\ndef test_mul():\n"
                                                    "    assert mul(2, 3) == 6\n"})
        assert (await gate.check(repo, "main", first, PYTEST)).action == "pass"
        assert (await gate.check(repo, "main", second, PYTEST, ahead=[("T1", first)])).action == "pass"
        ws = Workspaces(tmp_path / f"wt-{reuse}")
        await _land(repo, gate, ws, first, "T1")
        pm = await ws.prepare_merge(repo, "main", second, "Merge T2")
        try:
            runs = gate.runs
            res = await gate.merge_run(repo, PYTEST, pm.merged, pm.base)
        finally:
            await ws.discard(repo, pm.scratch)
        assert not res.passed and "test_only_add" in res.detail(), res.detail()
        if reuse:
            assert gate.runs == runs and res.reused_from, res.detail()
            assert res.detail().startswith("not run again: tree "), res.detail()
        else:
            assert gate.runs == runs + 1 and not res.reused_from
        run_git(repo, "reset", "-q", "--hard", "HEAD~1")
    gate.reuse_reds = True


async def test_a_train_red_that_also_breaks_a_rename_is_not_run_again_either(repo, gate, main_back, tmp_path):  # noqa: F811
    """The demo's inventory pair: T2 renames add to plus (its test follows), T1 ahead adds a caller of add. On
    top of T1, T2's run fails (report.py no longer imports) and the rename no longer completes (main's test
    'body rewritten'): a block, whose merge after T1 landed would go back; it is not run again either.
    Liveness: with reds not reused, the merge runs."""
    caller = {"report.py": "from calc import add\n\n\ndef total(xs):\n    return sum(xs)\n",
              "tests/test_report.py": "from report import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"}
    rename = {"calc.py": "def plus(a, b):\n    return a + b\n",
              "tests/test_calc.py": CALC_TESTS.replace("import add", "import plus").replace("assert add(", "assert plus(")}
    for reuse in (False, True):
        gate.greens, gate.reds, gate.reuse_reds = GreenTrees(), {}, reuse
        first, second = branch(repo, caller), branch(repo, rename)
        assert (await gate.check(repo, "main", first, PYTEST)).action == "pass"
        stage = await gate.check(repo, "main", second, PYTEST, ahead=[("T1", first)])
        assert stage.action == "pass" and stage.verdicts[0]["gate"] == "train", stage.text
        assert "body rewritten" in stage.verdicts[0]["detail"], stage.verdicts[0]["detail"]
        ws = Workspaces(tmp_path / f"wt-rename-{reuse}")
        await _land(repo, gate, ws, first, "T1")
        pm = await ws.prepare_merge(repo, "main", second, "Merge T2")
        try:
            runs = gate.runs
            res = await gate.merge_run(repo, PYTEST, pm.merged, pm.base, main_branch="main")
        finally:
            await ws.discard(repo, pm.scratch)
        assert not res.passed and not res.blocks, res.detail()  # back to the builder, either way
        assert (gate.runs == runs) == reuse, (reuse, gate.runs, runs, res.detail()[:300])
        run_git(repo, "reset", "-q", "--hard", "HEAD~1")
    gate.reuse_reds = True
