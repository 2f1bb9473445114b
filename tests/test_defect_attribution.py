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


async def _breaker(tmp_path, change: dict[str, str], *, with_base: bool, timeout_s: float = 30,
                   cache: bool = False):
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

    runs: dict = {}
    count = [0]

    async def repro(commit, kind, body, *, fix=None):
        count[0] += 1
        body = body.replace("{run}", str(count[0]))  # a flaky world: what differs between runs (see below)
        # the same run asked twice in one test (several attacks share one reproduction) is run once: a test's
        # cache of a deterministic run, it changes no judgement (the flaky test runs with it off)
        key = (commit, kind, body, tuple(sorted((fix or {}).items())))
        if key in runs and cache:
            return runs[key]
        runs[key] = await reproduce(Sandbox("bwrap"), repo, tmp_path / "scratch", commit, kind, body,
                                    timeout_s=timeout_s, output_cap_bytes=64_000, test_command=PYTEST, fix=fix)
        return runs[key]

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


async def _report(tmp_path, change, reproduction, *, with_base, unproven=True, timeout_s=30, **more):
    box, store, tid = await _breaker(tmp_path, change, with_base=with_base, timeout_s=timeout_s)
    if not unproven:  # the defence of this change switched off: the base judgement alone (main before B-08's end)
        async def no_witness(*_args, **_kw):
            return None
        box._unproven = no_witness
    try:
        out = await box.call("report_defect", {"title": "found something", "reproduction": reproduction, **more})
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
    timeout_s = 2 if name == "hangs" else 30
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
    out, opened = await _report(tmp_path, {"calc/sub.py": SUB_BUG}, body, with_base=True, kind=kind,
                                fix={"calc/sub.py": SUB_OK})
    if kind == "test_file":
        assert not out.is_error and opened == ["D1"], out.text
    else:  # a command's exit code is forged by one os._exit(0) in a fix: new code's defects are test files
        assert out.is_error and opened == [] and "give the reproduction as a test_file" in out.text, out.text


NEW_CODE = {"calc/sub.py": SUB_OK, "tests/test_sub.py": "from calc.sub import sub\n\n\ndef test_sub():\n"
                                                      "    assert sub(5, 3) == 2\n"}
ADVERSARY = "python -c 'from calc.sub import sub; sub(10**6, 1); assert 0'"  # B-08's own payload
ASSERT_0_TEST = "from calc.sub import sub\n\n\ndef test_memory():\n    sub(10 ** 6, 1)\n    assert 0\n"
# a breaker's attacks on a correct change that adds calc/sub.py: each fails on main only because calc.sub is
# missing (as a real defect of new code does), and no honest fix can make it pass
NO_FIX_CAN_PASS = {
    "command_no_fix": dict(reproduction=ADVERSARY, kind="command"),
    # a command with a fix that ends the process with 0 before the assertion: a command's exit code is forgeable
    "command_fix_exits_0": dict(reproduction=ADVERSARY, kind="command",
                                fix={"calc/sub.py": "import os\n\n\ndef sub(a, b):\n    os._exit(0)\n"}),
    "test_file_no_fix": dict(reproduction=ASSERT_0_TEST, kind="test_file"),
    "fix_that_does_not_pass": dict(reproduction=ASSERT_0_TEST, kind="test_file", fix={"calc/sub.py": SUB_OK}),
    # ends the test process before the assertion: the outcome stream holds a test that never reported
    "fix_exits_0": dict(reproduction=ASSERT_0_TEST, kind="test_file",
                        fix={"calc/sub.py": "import os\n\n\ndef sub(a, b):\n    os._exit(0)\n"}),
    # skips the test: a skip proves nothing passes
    "fix_skips": dict(reproduction=ASSERT_0_TEST, kind="test_file",
                      fix={"calc/sub.py": "import pytest\n\n\ndef sub(a, b):\n    pytest.skip('fixed')\n"}),
    # a conftest (not a file of the change) that swallows the assertion
    "fix_outside_the_change": dict(reproduction=ASSERT_0_TEST, kind="test_file",
                                   fix={"conftest.py": "import pytest\n\n\n@pytest.hookimpl(wrapper=True)\n"
                                        "def pytest_runtest_call(item):\n    try:\n        yield\n"
                                        "    except AssertionError:\n        return None\n"}),
}


async def test_the_adversarys_payload_opens_without_the_witness(tmp_path):
    """Liveness, end to end: the base judgement alone opens B-08's own reproduction (main fails only on the
    missing calc.sub); with the witness it is refused."""
    out, opened = await _report(tmp_path / "live", NEW_CODE, ADVERSARY, with_base=True, unproven=False)
    assert not out.is_error and opened == ["D1"], f"liveness: without the witness it opens:\n{out.text}"
    out, opened = await _report(tmp_path / "now", NEW_CODE, ADVERSARY, with_base=True)
    assert out.is_error and opened == [] and "give the reproduction as a test_file" in out.text, out.text


async def test_new_code_reproductions_no_fix_can_pass_are_refused(tmp_path):
    """Each attack, in one breaker session: the base judgement lets it through (liveness: the call reaches the
    witness check, where the old cockpit opened the defect) and the witness refuses it with the reason."""
    box, store, tid = await _breaker(tmp_path, NEW_CODE, with_base=True, cache=True)
    reached: list[str] = []
    witness = box._unproven

    async def spy(*args, **kw):
        reached.append(current)
        return await witness(*args, **kw)

    box._unproven = spy
    try:
        for current, more in NO_FIX_CAN_PASS.items():
            out = await box.call("report_defect", {"title": current, **more})
            assert out.is_error and out.text.startswith("not opened:"), (current, out.text)
            assert reached[-1:] == [current], f"liveness: {current} never got past the base judgement:\n{out.text}"
            why = {"command_no_fix": "give the reproduction as a test_file",
                   "command_fix_exits_0": "give the reproduction as a test_file",
                   "test_file_no_fix": "give the reproduction as a test_file",
                   "fix_outside_the_change": "a fix may rewrite only files this change added or modified"}
            assert why.get(current, "with your fix it does not pass either") in out.text, (current, out.text)
            # the fix did run: what it made of the test
            seen = {"fix_that_does_not_pass": "test outcomes: failed", "fix_skips": "test outcomes: skipped",
                    "fix_exits_0": "contradicts itself"}
            assert seen.get(current, "") in out.text, (current, out.text)
        await store.flush()
        assert store.task(tid).open_defects == []
        rejected = [e for e in await store.events(task_id=tid) if e.kind == Kind.DEFECT_REJECTED]
        assert len(rejected) == len(NO_FIX_CAN_PASS) and all(e.data["reason"].startswith("not opened:")
                                                              for e in rejected)
    finally:
        await store.close()


async def test_a_flaky_regression_is_refused(tmp_path):
    """A flaky reproduction: its outcome depends on something outside the code (a clock, a seed, the network),
    here made deterministic by the run's number in the report ({run}: the harness writes it in). It fails on
    the first run (the commit) and passes on the second (main): one run per side opens it (liveness); the
    cockpit's second run on the commit passes, so it is refused."""
    flaky = "python -c 'assert {run} not in (1, 4)'"
    out, opened = await _report(tmp_path / "live", NEW_CODE, flaky, with_base=True, unproven=False)
    assert not out.is_error and opened == ["D1"], f"liveness: one run per side opens it:\n{out.text}"
    out, opened = await _report(tmp_path / "now", NEW_CODE, flaky, with_base=True)
    assert out.is_error and opened == [] and "does not say the same" in out.text, out.text
