"""The check stage judges a commit as it would land: merged onto main's head when main moved since it branched.

Each tree tested once: when the queue then merges the same commit onto the same main, the tree is the one
the check ran, and the queue reuses that green instead of running the suite again (with the behaviour
switched off, the queue's run is the extra one). The same merge shows a semantic conflict with what
landed meanwhile before any reviewer is paid (switched off, the commit alone passes into review).
A merge git cannot make by itself tests the commit alone, as before. Real repos, bwrap, pytest.
"""

from __future__ import annotations

import pytest
from gate_kit import CALC_TESTS, PYTEST, branch, gate, repo  # noqa: F401  (fixtures)
from gitrepo import commit_files, run_git

from cockpit.factory.green_trees import GreenTrees
from cockpit.factory.workspaces import Workspaces

GOOD = {"calc.py": "def add(a, b):\n    return b + a\n"}


@pytest.fixture
def main_moves(repo):  # noqa: F811
    """Main gains a commit after the test's branches were made; put back after the test."""
    head = run_git(repo, "rev-parse", "main")

    def move(files: dict[str, str]) -> str:
        return commit_files(repo, files, "main moves on")

    yield move
    run_git(repo, "reset", "-q", "--hard", head)


async def _check_then_queue(gate, repo, sha, tmp_path, *, as_it_lands):  # noqa: F811
    """The check stage, then the queue's own merge and run, as cockpit.factory.merge_queue does them."""
    gate.greens, gate.as_it_lands = GreenTrees(), as_it_lands
    try:
        stage = await gate.check(repo, "main", sha, PYTEST)
        assert stage.action == "pass", stage.text
        ws = Workspaces(tmp_path / f"wt-{as_it_lands}")
        pm = await ws.prepare_merge(repo, "main", sha, "Merge T1: swap")
        assert pm.merged is not None, pm.detail
        try:
            runs = gate.runs
            res = await gate.merge_run(repo, PYTEST, pm.merged, pm.base)
            return stage, res, gate.runs - runs
        finally:
            await ws.discard(repo, pm.scratch)
    finally:
        gate.as_it_lands = True


async def test_the_queue_reuses_the_tree_the_check_ran_when_main_moved_before_the_check(
        repo, gate, main_moves, tmp_path):  # noqa: F811
    sha = branch(repo, GOOD)
    main_moves({"tests/test_more.py": "def test_truth():\n    assert True\n\n\ndef test_more():\n    assert 1\n"})
    stage, res, ran = await _check_then_queue(gate, repo, sha, tmp_path, as_it_lands=False)
    assert res.passed and ran == 1 and res.reused_from is None, "liveness: the commit alone checked, the queue runs again"
    stage, res, ran = await _check_then_queue(gate, repo, sha, tmp_path, as_it_lands=True)
    assert res.passed and ran == 0 and res.reused_from, res.detail()
    tests, guard = stage.verdicts
    main = run_git(repo, "rev-parse", "main")
    # the verdicts stay the task's commit's (the domain judges that commit); what ran is named beside it
    assert tests["commit"] == guard["commit"] == sha and tests["onto"] == main and tests["tested"] != sha
    assert run_git(repo, "rev-parse", f"{tests['tested']}^@").split() == [main, sha]
    assert f"tested as it would land: merged onto main {main[:12]}" in guard["detail"]
    assert guard["detail"].startswith("4 tests collected (main "), guard["detail"]  # main's new test ran too


async def test_a_semantic_conflict_with_what_landed_meanwhile_is_sent_back_before_review(
        repo, gate, main_moves):  # noqa: F811
    # the branch adds a test of add(); meanwhile main renamed add() to plus() (its own tests follow)
    sha = branch(repo, {"tests/test_twice.py": "from calc import add\n\n\ndef test_twice():\n"
                                               "    assert add(add(1, 1), 1) == 3\n"})
    main_moves({"calc.py": "def plus(a, b):\n    return a + b\n",
                "tests/test_calc.py": CALC_TESTS.replace("add", "plus")})
    gate.greens, gate.as_it_lands = GreenTrees(), False
    try:
        alone = await gate.check(repo, "main", sha, PYTEST)
        assert alone.action == "pass", "liveness: judged alone, the commit goes to review and fails only in the queue"
    finally:
        gate.as_it_lands = True
    res = await gate.check(repo, "main", sha, PYTEST)
    main = run_git(repo, "rev-parse", "main")
    assert res.action == "back" and res.reasons == ["tests"], res.text
    assert f"tests gate failed on {sha[:12]} merged onto main {main[:12]}" in res.text
    assert "ImportError" in res.text and "sync_main" in res.text
    assert res.verdicts[0]["outcome"] == "fail" and res.verdicts[0]["commit"] == sha


async def test_a_branch_git_cannot_merge_is_judged_alone(repo, gate, main_moves):  # noqa: F811
    sha = branch(repo, GOOD)
    main_moves({"calc.py": "def add(a, b):\n    return sum((a, b))\n"})  # the same line, changed otherwise
    gate.greens = GreenTrees()
    res = await gate.check(repo, "main", sha, PYTEST)
    assert res.action == "pass", res.text
    assert "onto" not in res.verdicts[0] and res.verdicts[0]["tree"] == run_git(repo, "rev-parse", f"{sha}^{{tree}}")
    assert "tested as it would land" not in res.verdicts[1]["detail"]


async def test_a_branch_that_contains_main_is_its_own_tree(repo, gate):  # noqa: F811
    sha = branch(repo, GOOD)
    gate.greens = GreenTrees()
    res = await gate.check(repo, "main", sha, PYTEST)
    assert res.action == "pass" and "onto" not in res.verdicts[0], res.text
    assert res.verdicts[0]["tree"] == run_git(repo, "rev-parse", f"{sha}^{{tree}}")
