"""The git-only guard of the tests gate: deleted test files and touched runner or factory files need a human.

Real git repos. (Main's tests by identity, counted from the run itself: tests/test_gates.py.)
"""

import pytest

from cockpit.factory.guards import (
    DEFAULT_PROTECTED, PROTECTED_CHANGED, TESTS_REMOVED, GateGuard, is_protected, is_test_file, path_matches,
)
from gitrepo import commit_files, make_repo, run_git

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
def guard():
    return GateGuard()


def test_patterns_match_like_gitignore():
    assert all(is_protected(p, DEFAULT_PROTECTED) for p in (
        "conftest.py", "tests/conftest.py", "a/b/c/conftest.py", "pytest.ini", ".pytest.ini", "sub/tox.ini",
        "setup.cfg", "pyproject.toml", ".github/workflows/ci.yml", ".ci/run", "Makefile", "sitecustomize.py",
        "usercustomize.py", "lib/x.pth", "package.json", "jest.config.ts", ".cargo/config.toml", "build.rs",
        "go.mod", ".cockpit/rules/00-review.md"))
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
