"""A breaker's defect is opened only if the cockpit's own re-run fails: real git, bwrap, SQLite and pytest."""

import sys

import pytest

from cockpit.agents.tools import WorktreeTools
from cockpit.domain import Event, Kind, TaskState
from cockpit.factory.defects import PYTEST_REPRO, guess_kind, repro_test_command, reproduce
from cockpit.host.sandbox import Sandbox
from cockpit.factory.task_tools import TaskToolbox
from cockpit.factory.workspaces import Workspaces
from cockpit.store import Store
from gitrepo import make_repo, run_git

PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
FILES = {
    "calc.py": "def divide(a, b):\n    return a / b\n",
    "pytest.ini": "[pytest]\npythonpath = .\n",
    "tests/test_calc.py": "from calc import divide\n\n\ndef test_divide():\n    assert divide(6, 3) == 2\n",
}
FAILING_TEST = "from calc import divide\n\n\ndef test_by_zero_is_none():\n    assert divide(1, 0) is None\n"


async def run(tmp_path, repo, kind, body):
    return await reproduce(Sandbox("bwrap"), repo, tmp_path / "scratch", run_git(repo, "rev-parse", "main"), kind, body,
                           timeout_s=60, output_cap_bytes=64_000, test_command=PYTEST)


@pytest.mark.parametrize("kind, body, fails, why", [
    ("command", "python -c 'from calc import divide; divide(1, 0)'", True, "it exited 1"),
    ("command", "python -c 'from calc import divide; assert divide(6, 3) == 2'", False, "it exited 0"),
    ("command", "no-such-tool --crash", False, "the command could not run (exit code 127)"),
    ("test_file", FAILING_TEST, True, "a test failed"),
    ("test_file", "from calc import divide\n\n\ndef test_ok():\n    assert divide(6, 2) == 3\n", False, "its tests passed"),
    ("test_file", "from calc import multiply\n\n\ndef test_x():\n    pass\n", False, "the file did not collect"),
    ("test_file", "x = 1\n", False, "it holds no test"),
])
async def test_only_a_real_failure_reproduces(tmp_path, kind, body, fails, why):
    repo = make_repo(tmp_path / "repo", FILES)
    res = await run(tmp_path, repo, kind, body)
    assert res.fails is fails, res.output
    assert res.why.startswith(why)


async def test_the_reproduction_runs_in_a_throwaway_checkout_never_the_builders_tree(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    res = await run(tmp_path, repo, "command", "touch scribbled && ls && pwd && false")
    assert res.fails and "scribbled" in res.output and str(repo) not in res.output.splitlines()[-1]
    assert not (repo / "scribbled").exists()
    assert list((tmp_path / "scratch").iterdir()) == []
    assert run_git(repo, "worktree", "list").count("\n") == 0  # the throwaway worktree is gone


def test_kinds_and_the_test_file_command():
    assert guess_kind(FAILING_TEST) == "test_file" and guess_kind("python -c 'import calc'") == "command"
    assert repro_test_command(PYTEST).startswith(PYTEST) and repro_test_command(PYTEST).endswith(" test_cockpit_reproduction.py")
    assert repro_test_command("cd src && pytest") == PYTEST_REPRO and repro_test_command("make test") == PYTEST_REPRO
    assert repro_test_command("pytest tests/unit") == PYTEST_REPRO


async def test_report_defect_opens_only_what_reproduces_and_records_the_rest(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    store = await Store.open(tmp_path / "cockpit.db")
    ws = Workspaces(tmp_path / "worktrees")
    tid = (await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p",
                                    data={"title": "Division"}))).task_id

    async def sys_ev(kind, actor="system", **data):
        return await store.append(Event(kind=kind, actor=actor, product="p", task_id=tid, data=data))

    await sys_ev(Kind.TASK_STARTED, agent="builder-1")
    wt = await ws.ensure("p", repo, "main", tid)
    (wt / "notes.md").write_text("divide\n")
    sha = await ws.commit(wt, "notes", author="builder-1")
    await sys_ev(Kind.COMMITTED, "builder-1", sha=sha)
    await sys_ev(Kind.SUBMITTED, "builder-1")
    await sys_ev(Kind.VERDICT, gate="tests", commit=sha, outcome="pass")
    await sys_ev(Kind.CHECKED)

    async def repro(commit, kind, body):
        return await reproduce(Sandbox("bwrap"), repo, tmp_path / "scratch", commit, kind, body, timeout_s=60,
                               output_cap_bytes=64_000, test_command=PYTEST)

    scratch = tmp_path / "breaker-scratch"
    scratch.mkdir()
    tools = WorktreeTools(wt, Sandbox("bwrap"), scratch=scratch, worktree_writable=False)
    box = TaskToolbox(role="breaker", agent="breaker-1", task_id=tid, product="p", worktree=wt, worktree_tools=tools,
                      store=store, workspaces=ws, commit=sha, reproduce=repro)
    assert {"report_defect", "run_command", "read_file"} <= box.names() and not box.names() & {"write_file", "commit"}
    # the breaker writes its scratch dir, never the product's files
    out = await box.call("run_command", {"command": f"echo probe > {scratch}/probe.txt; echo x > calc.py"})
    assert "Read-only file system" in out.text and (scratch / "probe.txt").read_text() == "probe\n"
    assert (wt / "calc.py").read_text() == FILES["calc.py"]

    wrong = await box.call("report_defect", {"title": "divide(6, 3) is wrong",
                                             "reproduction": "python -c 'from calc import divide; assert divide(6, 3) == 2'"})
    assert wrong.is_error and "it exited 0, so it shows no defect" in wrong.text
    assert store.task(tid).open_defects == []
    real = await box.call("report_defect", {"title": "divide by zero crashes", "reproduction": FAILING_TEST})
    assert not real.is_error and real.text.startswith(f"defect D1 opened on {sha[:12]}")
    await store.flush()
    t = store.task(tid)
    assert t.open_defects == ["D1"] and t.defects[0].kind == "test_file" and "ZeroDivisionError" in t.defects[0].detail
    rejected = await store.events(kinds=[Kind.DEFECT_REJECTED])
    assert [(e.actor, e.data["title"], e.data["exit_code"]) for e in rejected] == [("breaker-1", "divide(6, 3) is wrong", 0)]
    assert [e.actor for e in await store.events(kinds=[Kind.DEFECT_OPENED])] == ["breaker-1"]
    assert t.state == TaskState.REVIEWING
    await store.close()
