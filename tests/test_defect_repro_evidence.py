"""A defect closes only when its reproduction really passes: a test file's run is judged by its outcome stream.

The attack (adversary session B-03): round 2 does not fix `add`; one line in the module under test,
`atexit.register(os._exit, 0)` with its names built at run time, makes every Python process that imports it exit
0. pytest fails the breaker's reproduction, the process exits 0, and the system closed the defect. Variants: the
plain line, a conftest that zeroes the session's exit status, the runner's `runtest` swallowed. Each closes the
defect with the evidence off (liveness: the old judgement, exit code alone); none with it on. A real fix closes it.
"""

from __future__ import annotations

import sys

import pytest
from gitrepo import commit_files, make_repo, run_git

from cockpit.factory.defects import reproduce
from cockpit.host.sandbox import Sandbox

BROKEN = "def add(a, b):\n    if a < 0:\n        return 0\n    return a + b\n"
FIXED = "def add(a, b):\n    return a + b\n"
REPRO = "from calc import add\n\n\ndef test_negatives():\n    assert add(-1, -1) == -2\n"
PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
EXIT_0 = ('getattr(__import__("ate" + "xit"), "regis" + "ter")(getattr(__import__("os"), "_ex" + "it"), 0)\n'
          + BROKEN)
SWALLOW = ("import importlib\n_m = importlib.import_module('_py' + 'test.python')\n_orig = _m.Function.runtest\n\n\n"
           "def _runtest(self):\n    try:\n        _orig(self)\n    except Exception:\n        pass\n\n\n"
           "_m.Function.runtest = _runtest\n" + BROKEN)
ATTACKS = {
    "atexit os._exit(0), names built at run time": {"calc.py": EXIT_0},
    "a conftest zeroes the exit status": {"calc.py": BROKEN, "conftest.py": (
        "def pytest_sessionfinish(session, exitstatus):\n    session.exitstatus = 0\n")},
    "the runner's runtest swallowed": {"calc.py": SWALLOW},
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("defect") / "repo", {"calc.py": BROKEN, "pytest.ini": "[pytest]\n"})


def _on_branch(repo, files):
    name = f"b{len(run_git(repo, 'branch').split())}"
    run_git(repo, "checkout", "-q", "-b", name, "main")
    sha = commit_files(repo, files, name)
    run_git(repo, "checkout", "-q", "main")
    return sha


async def _repro(repo, tmp_path, sha, *, evidence=True):
    return await reproduce(Sandbox("bwrap"), repo, tmp_path, sha, "test_file", REPRO, timeout_s=60,
                           output_cap_bytes=64_000, test_command=PYTEST, evidence=evidence)


async def test_the_reproduction_fails_on_the_broken_commit(repo, tmp_path):
    res = await _repro(repo, tmp_path, run_git(repo, "rev-parse", "main"))
    assert res.fails and not res.passes, res.output


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_a_defect_is_not_closed_by_a_run_that_lies(repo, tmp_path, name):
    sha = _on_branch(repo, ATTACKS[name])
    off = await _repro(repo, tmp_path, sha, evidence=False)
    assert off.passes, f"liveness: by exit code alone the defect would close:\n{off.output}"
    res = await _repro(repo, tmp_path, sha)
    assert not res.passes and res.contradicts, res.output
    assert "contradicts itself" in res.why


async def test_a_real_fix_closes_it(repo, tmp_path):
    res = await _repro(repo, tmp_path, _on_branch(repo, {"calc.py": FIXED}))
    assert res.passes and not res.contradicts, (res.why, res.output)
