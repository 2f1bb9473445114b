"""Main's baseline comes from the green run of the tree that became main, not from a collect-only run.

After a landing, the next check against the new main needs no collect-only process; the baseline it uses
is that tree's own collection: the landed task's tests are in it (a later task removing one is caught),
main's copies of edited test files that ran beside it are not, and a product test file named like such
a copy still is (a name the tree chose never leaves its tests out of the baseline). Real repos, bwrap, pytest.
"""

from __future__ import annotations

import pytest
from gate_kit import CALC_TESTS, PYTEST, branch, gate, repo  # noqa: F401  (fixtures)
from gitrepo import run_git

from cockpit.factory.green_trees import GreenTrees
from cockpit.factory.workspaces import Workspaces


def tree_of(product, rev):
    return run_git(product, "rev-parse", f"{rev}^{{tree}}").strip()

# edits main's test file (so main's copy of it runs beside) and adds a test file named like a copy
LANDS = {"calc.py": "def add(a, b):\n    return b + a\n",
         "tests/test_calc.py": CALC_TESTS + "\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n",
         "tests/test_order__cockpit_main.py": "from calc import add\n\n\ndef test_order():\n"
                                              "    assert add(1, 2) == add(2, 1)\n"}


@pytest.fixture
def landed(repo, gate, tmp_path):  # noqa: F811
    """LANDS checked, merged through the queue's run and advanced onto main, as the merge queue does it."""
    head = run_git(repo, "rev-parse", "main")
    gate.greens = GreenTrees()

    async def land() -> str:
        sha = branch(repo, LANDS)
        stage = await gate.check(repo, "main", sha, PYTEST)
        assert stage.action == "pass", stage.text
        assert "main's versions of the edited test files ran too: tests/test_calc__cockpit_main.py" in \
            stage.verdicts[0]["detail"]
        ws = Workspaces(tmp_path / "wt")
        pm = await ws.prepare_merge(repo, "main", sha, "Merge T1")
        try:
            res = await gate.merge_run(repo, PYTEST, pm.merged, pm.base)
            assert res.passed and res.reused_from, res.detail()
            moved = await ws.advance(repo, "main", pm.merged, pm.base)
            assert moved.ok, moved.detail
        finally:
            await ws.discard(repo, pm.scratch)
        run_git(repo, "reset", "-q", "--hard", "main")
        return pm.merged

    yield land
    run_git(repo, "reset", "-q", "--hard", head)


async def test_the_next_check_uses_the_landed_trees_collection(repo, gate, landed):  # noqa: F811
    new_main = await landed()
    seeded = gate._baselines[(str(repo), PYTEST, tree_of(repo, new_main))]
    ids = set(seeded.collected)
    assert "tests/test_calc.py::test_add_zero" in ids and "tests/test_order__cockpit_main.py::test_order" in ids
    assert not any(i.startswith("tests/test_calc__cockpit_main.py") for i in ids), ids
    before = gate.collections
    # a later task drops the landed test and rewrites the one named like a copy: both are main's now
    later = branch(repo, {"tests/test_calc.py": CALC_TESTS,
                          "tests/test_order__cockpit_main.py": "def test_order():\n    assert True\n"})
    res = await gate.check(repo, "main", later, PYTEST)
    assert gate.collections == before, "no collect-only run of main: its baseline came from the landed run"
    assert res.action == "block", res.text
    assert "tests/test_calc.py::test_add_zero, removed" in res.text
    assert "tests/test_order__cockpit_main.py::test_order, body rewritten" in res.text, res.text


async def test_a_collect_only_run_finds_the_same_baseline(repo, gate, landed):  # noqa: F811
    new_main = await landed()
    seeded = gate._baselines.pop((str(repo), PYTEST, tree_of(repo, new_main)))
    before = gate.collections
    fresh = await gate.baseline(repo, PYTEST, new_main)
    assert gate.collections == before + 1  # liveness of the counter: without the seed, a collect-only run
    assert sorted(fresh.collected) == sorted(seeded.collected)
    assert (fresh.inifile, fresh.addopts, sorted(fresh.plugins)) == (seeded.inifile, seeded.addopts, sorted(seeded.plugins))
