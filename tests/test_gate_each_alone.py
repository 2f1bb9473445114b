"""Main's test files, each in a pytest process of its own, on the change's product code (adversary H).

A test file's code reaches anything in its process. One of main's that does nothing on main (a config
instance's value set to what it already is, a washer of failures while nothing fails) puts a later change's
broken product right for every other file in a shared run; adversary H landed fourteen shapes of it past the
checks that look at values (an instance attribute, a nested dict, a function's defaults or code, a partial,
a stdlib function, a module put in sys.modules by hand, ...). Run alone, a test file reaches its own tests
only. Each attack lands with `each_alone` switched off (liveness: every other defence on). Real git, bwrap,
pytest and the reporter.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from gate_kit import PYTEST, check
from gitrepo import make_repo, run_git
from test_gate_product_values import _broken

from cockpit.factory.gates import DEFENCES, MAIN_APART_FAILED

CALC = ("import operator\n\n\nclass _Config:\n    pass\n\n\n_cfg = _Config()\n_cfg.op = operator.{}\n\n\n"
        "def add(a, b):\n    return _cfg.op(a, b)\n")
CALC_TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
              "def test_add_negative():\n    assert add(-2, 1) == -1\n")
BASE = {"calc.py": CALC.format("add"), "pytest.ini": "[pytest]\npythonpath = .\n", "tests/test_calc.py": CALC_TESTS}
# what main's new test file does, a no-op on main (each lands first, checked green: nothing it does shows)
DORMANT = {
    "instance_attribute": ("tests/test_aaa_cfg.py", "import operator\n\nimport calc\n\n"
                           "calc._cfg.op = operator.add  # the standard table\n\n\n"
                           "def test_cfg():\n    assert calc._cfg.op(1, 1) == 2\n", CALC.format("sub")),
    "stdlib_function": ("tests/test_aaa_ops.py", "import operator\n\noperator.sub = operator.add  # unused on main\n\n\n"
                        "def test_ops():\n    assert operator.add(1, 1) == 2\n",
                        CALC.format("add").replace("_cfg.op(a, b)", "operator.sub(a, b)")),
    "hand_made_module": ("tests/test_aaa_mod.py", "import sys\nimport types\n\nimport calc as _real\n\n"
                         "_m = types.ModuleType('calc')\n_m.add = lambda a, b: a + b\n_m._cfg = _real._cfg\n"
                         "sys.modules['calc'] = _m\n\n\ndef test_mod():\n    assert sys.modules['calc'].add(1, 1) == 2\n",
                         CALC.format("add").replace("return _cfg.op(a, b)", "return a * b")),
}


@pytest.fixture
def repo():
    d = Path(tempfile.mkdtemp(prefix="cockpit-alone-", dir="/var/tmp"))
    yield make_repo(d / "repo", BASE)
    shutil.rmtree(d, ignore_errors=True)


def _land(repo, files, message):
    from gitrepo import commit_files
    return commit_files(repo, files, message)


@pytest.mark.parametrize("shape", sorted(DORMANT))
async def test_a_dormant_test_file_of_main_reaches_only_its_own_tests(repo, gate, shape):
    from gate_kit import branch

    path, text, broken = DORMANT[shape]
    a = branch(repo, {path: text})
    ra = await check(gate, repo, a)
    assert ra.action == "pass", ra.text  # a no-op on main: nothing to see
    run_git(repo, "merge", "-q", "--ff-only", a)
    b = branch(repo, {"calc.py": broken})  # B touches no test file
    _broken(repo, b)
    landed = await check(gate, repo, b, off=["each_alone"])
    assert landed.action == "pass", f"liveness: main's own test file puts the product right:\n{landed.text}"
    res = await check(gate, repo, b)
    assert res.action == "block" and MAIN_APART_FAILED in res.reasons, res.text
    assert "--- tests/test_calc.py, alone: exit code 1" in res.text and "each test file in a process of its own" \
        in res.text, res.text
    assert "apart:tests/test_calc.py::test_add" in res.findings, res.findings


async def test_a_file_that_fails_alone_on_main_too_is_named_and_held(repo, gate):
    """tests/test_b.py passes only after tests/test_a.py ran (it sets up a value): alone it fails on main as well.
    It is not excused (a change that landed before may have made it lean: adversary K-68): the human decides,
    told that it fails alone on main too."""
    from gate_kit import branch

    _land(repo, {"tests/test_a.py": "import calc\n\ncalc.READY = True\n\n\ndef test_a():\n    assert calc.READY\n",
                 "tests/test_b.py": "import calc\n\n\ndef test_b():\n    assert getattr(calc, 'READY', False)\n"},
          "two test files that lean on each other")
    sha = branch(repo, {"calc.py": CALC.format("add") + "\n\ndef double(a):\n    return add(a, a)\n"})
    gate.defences = set(DEFENCES) - {"product_values"}  # (test_a sets a product value at import: main's own)
    try:
        res = await gate.check(repo, "main", sha, PYTEST)
    finally:
        gate.defences = set(DEFENCES)
    assert res.action == "block" and MAIN_APART_FAILED in res.reasons, res.text
    assert "fails alone on main too: tests/test_b.py (it leans on another test file, or a change made it" in res.text


async def test_a_package_init_that_makes_main_s_file_lean_excuses_nothing(repo, gate):
    """Adversary K-68: A adds tests/__init__.py, which sets the product wrong at import for every file under
    tests/, and a test file that sets it right: the whole run passes, and main's unchanged test_calc.py now fails
    alone on main. Excused as "fails alone on main too", B's break of that value then landed. Now nothing is
    excused. Liveness: with main's tests apart off, B lands."""
    from gate_kit import branch

    _land(repo, {"tests/test_more.py": "def test_truth():\n    assert True\n"}, "a second test file")
    a = branch(repo, {"tests/__init__.py": "import operator\n\nimport calc\n\ncalc._cfg.op = operator.sub\n",
                      "tests/test_aaa_std.py": DORMANT["instance_attribute"][1]})
    ra = await check(gate, repo, a, off=["product_values"])  # (A sets a product value at import: its own finding)
    assert ra.action == "pass", ra.text
    run_git(repo, "merge", "-q", "--ff-only", a)
    b = branch(repo, {"calc.py": CALC.format("sub")})
    landed = await check(gate, repo, b, off=["main_apart"])
    assert landed.action == "pass", f"liveness: the whole run passes (A's files put it right):\n{landed.text}"
    res = await gate.check(repo, "main", b, PYTEST)
    assert res.action == "block" and MAIN_APART_FAILED in res.reasons, res.text
    assert "--- tests/test_calc.py, alone: exit code 1" in res.text, res.text
