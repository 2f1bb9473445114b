"""The guard of the tests gate: deleted or fewer tests and touched harness files need a human.

Real git repos, the real bwrap sandbox, real pytest collection.
"""

import sys

import pytest

from cockpit.factory.guards import (
    DEFAULT_PROTECTED, PROTECTED_CHANGED, TESTS_REMOVED, GateGuard, CollectedTests, compare_counts, is_protected, is_test_file,
    path_matches,
)
from cockpit.factory.sandbox import Sandbox
from cockpit.factory.scratch import throwaway_tree
from gitrepo import commit_files, make_repo, run_git

PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
BASE = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "pytest.ini": "[pytest]\npythonpath = .\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
                          "def test_add_negative():\n    assert add(-2, 1) == -1\n",
    "tests/test_more.py": "def test_truth():\n    assert True\n",
}


def branch(repo, files, delete=(), name="task", message="change"):
    """A commit on a new branch off main (main stays checked out); returns its sha."""
    run_git(repo, "checkout", "-q", "-b", name, "main")
    for path in delete:
        run_git(repo, "rm", "-q", path)
    sha = commit_files(repo, files, message) if files else (run_git(repo, "commit", "-q", "-m", message) or
                                                           run_git(repo, "rev-parse", "HEAD"))
    run_git(repo, "checkout", "-q", "main")
    return sha


@pytest.fixture
def guard(tmp_path):
    return GateGuard(Sandbox("bwrap"), tmp_path / "scratch", timeout_s=60, output_cap_bytes=64_000)


def test_patterns_match_like_gitignore():
    assert all(is_protected(p, DEFAULT_PROTECTED) for p in (
        "conftest.py", "tests/conftest.py", "pytest.ini", "sub/tox.ini", "setup.cfg", "pyproject.toml",
        ".github/workflows/ci.yml", ".ci/run", "Makefile"))
    assert not any(is_protected(p, DEFAULT_PROTECTED) for p in ("calc.py", "tests/test_calc.py", "docs/Makefile.md",
                                                                 "src/.github.py", "x/.ci/run"))
    assert path_matches("db/migrations/0001.sql", "db/migrations/") and path_matches("a/b/c.lock", "*.lock")
    assert not path_matches("other/db/migrations/1.sql", "db/migrations/**")
    assert all(is_test_file(p) for p in ("tests/test_x.py", "pkg/test_y.py", "x_test.py", "tests/helpers/util.py",
                                         "web/a.test.ts", "go/x_test.go"))
    assert not any(is_test_file(p) for p in ("calc.py", "testing.md", "tests/data.json", "contest.py"))


async def test_a_deleted_test_file_blocks_before_anything_runs(tmp_path, guard):
    repo = make_repo(tmp_path / "repo", BASE)
    sha = branch(repo, {"calc.py": "def add(a, b):\n    return a + b + 0\n"}, delete=["tests/test_more.py"])
    base, res = await guard.check_static(repo, "main", sha, DEFAULT_PROTECTED)
    assert base == run_git(repo, "rev-parse", "main")
    assert res.reasons == [TESTS_REMOVED] and "test files deleted: tests/test_more.py" in res.detail


async def test_a_renamed_test_file_is_no_deletion_but_a_moved_away_one_is(tmp_path, guard):
    repo = make_repo(tmp_path / "repo", BASE)
    run_git(repo, "checkout", "-q", "-b", "ren", "main")
    run_git(repo, "mv", "tests/test_more.py", "tests/test_truth.py")
    run_git(repo, "commit", "-q", "-m", "rename")
    run_git(repo, "mv", "tests/test_truth.py", "notes_truth.txt")
    run_git(repo, "commit", "-q", "-m", "move away")
    renamed, moved_away = run_git(repo, "rev-parse", "ren~1"), run_git(repo, "rev-parse", "ren")
    run_git(repo, "checkout", "-q", "main")
    assert not (await guard.check_static(repo, "main", renamed, DEFAULT_PROTECTED))[1].failed
    _, res = await guard.check_static(repo, "main", moved_away, DEFAULT_PROTECTED)
    assert res.reasons == [TESTS_REMOVED] and "tests/test_more.py" in res.detail


async def test_protected_files_and_a_product_widened_list(tmp_path, guard):
    repo = make_repo(tmp_path / "repo", BASE)
    sha = branch(repo, {"tests/conftest.py": "collect_ignore = ['test_calc.py']\n", "db/migrations/1.sql": "drop;\n"})
    _, res = await guard.check_static(repo, "main", sha, DEFAULT_PROTECTED)
    assert res.reasons == [PROTECTED_CHANGED] and res.detail == "protected files changed: tests/conftest.py"
    _, res = await guard.check_static(repo, "main", sha, [*DEFAULT_PROTECTED, "db/migrations/"])
    assert res.detail == "protected files changed: db/migrations/1.sql, tests/conftest.py"


async def test_fewer_tests_collected_than_on_main_is_tests_removed(tmp_path, guard):
    repo = make_repo(tmp_path / "repo", BASE)
    # the builder deletes the failing test function (the file stays, so only counting sees it)
    sha = branch(repo, {"tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
                        "calc.py": "def add(a, b):\n    return abs(a) + b\n"})
    base, static = await guard.check_static(repo, "main", sha, DEFAULT_PROTECTED)
    assert not static.failed
    async with throwaway_tree(repo, tmp_path / "trees", sha) as tree:
        res = await guard.check_count(repo, base, tree, PYTEST)
    assert res.reasons == [TESTS_REMOVED]
    assert res.detail.startswith(f"2 tests collected on this commit, 3 on main ({base[:12]})")
    assert "tests/test_calc.py: 2 -> 1" in res.detail and "test_more" not in res.detail


async def test_more_tests_pass_and_tests_landed_on_main_since_do_not_count_against_the_branch(tmp_path, guard):
    repo = make_repo(tmp_path / "repo", BASE)
    sha = branch(repo, {"tests/test_sub.py": "def test_a():\n    pass\n"})
    # meanwhile another task lands two tests on main: the branch is compared with where it was built from
    commit_files(repo, {"tests/test_landed.py": "def test_x():\n    pass\n\n\ndef test_y():\n    pass\n"})
    base, _ = await guard.check_static(repo, "main", sha, DEFAULT_PROTECTED)
    assert base != run_git(repo, "rev-parse", "main")
    async with throwaway_tree(repo, tmp_path / "trees", sha) as tree:
        res = await guard.check_count(repo, base, tree, PYTEST)
        # printing a fake summary fools nothing: the count comes from the collection itself
        assert not res.failed and res.detail == f"4 tests collected (main {base[:12]}: 3)"
    assert list((tmp_path / "scratch").iterdir()) == [], "the count's scratch files and checkouts are removed"


async def test_another_runner_is_not_counted_and_says_so(tmp_path, guard):
    repo = make_repo(tmp_path / "repo", BASE)
    sha = branch(repo, {"calc.py": "def add(a, b):\n    return b + a\n"})
    base, _ = await guard.check_static(repo, "main", sha, DEFAULT_PROTECTED)
    async with throwaway_tree(repo, tmp_path / "trees", sha) as tree:
        res = await guard.check_count(repo, base, tree, "./run-tests.sh")
    assert not res.failed and "does not run pytest" in res.detail and "deleted test files are checked" in res.detail


def test_an_uncountable_branch_against_a_counted_main_is_tests_removed():
    res = compare_counts(CollectedTests(3, {"tests/t.py": 3}), CollectedTests(None, note="collecting the tests failed"), "b" * 40)
    assert res is not None and res.reasons == [TESTS_REMOVED] and "3 were collected on main" in res.detail
    assert compare_counts(CollectedTests(None), CollectedTests(None), "b" * 40) is None


async def test_what_a_crash_left_in_the_scratch_area_is_cleared_at_start(tmp_path):
    from cockpit.factory.scratch import clear_scratch

    repo = make_repo(tmp_path / "repo", BASE)
    root = tmp_path / "worktrees" / ".cockpit-scratch"
    root.mkdir(parents=True)
    run_git(repo, "worktree", "add", "--detach", str(root / "repro-left"), "main")  # as if killed mid-run
    assert run_git(repo, "worktree", "list").count("\n") == 1
    assert await clear_scratch(root, [repo]) is True
    assert not root.exists() and run_git(repo, "worktree", "list").count("\n") == 0
    assert await clear_scratch(root, [repo]) is False
