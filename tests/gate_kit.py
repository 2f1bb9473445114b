"""Test helpers for the tests gate: a product repo outside /tmp, one TestsGate per module, branches, checks.

The fixtures (`repo`, `gate`) reach every test through tests/conftest.py; they are module-scoped so main's
baseline is collected once per module. Import the helpers you need (`from gate_kit import branch, check`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from gitrepo import commit_files, make_repo, run_git

from cockpit.factory.gates import DEFENCES, TestsGate
from cockpit.host.sandbox import Sandbox

PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
CALC_TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
              "def test_add_negative():\n    assert add(-2, 1) == -1\n")
BASE = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "pytest.ini": "[pytest]\npythonpath = .\n",
    "tests/test_calc.py": CALC_TESTS,
    "tests/test_more.py": "def test_truth():\n    assert True\n",
    "Makefile": "test:\n\tPYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider\n",
}
BROKEN = {"calc.py": "def add(a, b):\n    return a - b\n"}
# a plugin that turns every failure into a pass (attack 3)
GREENWASH = ("import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
             "    out = yield\n    rep = out.get_result()\n    rep.outcome = 'passed'\n")


@pytest.fixture(scope="module")
def repo():
    """Outside /tmp (the sandbox's /tmp is its own), so a write to it from a test really is refused."""
    d = Path(tempfile.mkdtemp(prefix="cockpit-gates-", dir="/var/tmp"))
    yield make_repo(d / "repo", BASE)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """One gate for the module (main's baseline is collected once); each test restores its defences."""
    g = TestsGate(Sandbox("bwrap"), tmp_path_factory.mktemp("scratch"), timeout_s=60, output_cap_bytes=64_000)
    yield g
    g.defences = set(DEFENCES)


# how test code finds the reporter's FIFO without any name the reporter exports (`_fifo_fd()`)
FIFO_FD = ("import os\n\n\ndef _fifo_fd():\n    for fd in os.listdir('/proc/self/fd'):\n        try:\n"
           "            if os.readlink(f'/proc/self/fd/{fd}').endswith('outcomes.fifo'):\n"
           "                return int(fd)\n        except OSError:\n            pass\n\n\n")

# send() asks who called it; reading the defaults of the reporter's core functions is an audited event it tells
CALLER_CHECK = "if caller not in _callers and not _told:"
DEFAULTS_READ = "if _id(args[0]) in _core and not _by_runner(_frame(1)):"


def without(monkeypatch, *checks):
    """The reporter with each of `checks` (a line of it) never true: the liveness side of its attack."""
    from cockpit.factory import evidence

    plugin = evidence._PLUGIN
    for line in checks:
        assert plugin.count(line) == 1, line
        plugin = plugin.replace(line, "if False:", 1)
    monkeypatch.setattr(evidence, "_PLUGIN", plugin)


_n = iter(range(1000))


def branch(repo, files, delete=()):
    """A commit on a new branch off main (main stays checked out); returns its sha."""
    name = f"b{next(_n)}"
    run_git(repo, "checkout", "-q", "-b", name, "main")
    for path in delete:
        run_git(repo, "rm", "-q", path)
    sha = commit_files(repo, files, name)
    run_git(repo, "checkout", "-q", "main")
    return sha


async def check(gate, repo, sha, *, off=(), command=PYTEST):
    """The check stage with the defences in `off` switched off. main_apart (main's tests run apart from the
    change's test files) stops most attacks that work through a test file by itself: it is switched off along
    with any other, so each test shows the work of the defence it names; tests/test_gate_main_apart.py shows
    main_apart's own (each attack landing with it alone off)."""
    gate.defences = set(DEFENCES) - set(off) - ({"main_apart"} if off else set())
    try:
        return await gate.check(repo, "main", sha, command)
    finally:
        gate.defences = set(DEFENCES)


