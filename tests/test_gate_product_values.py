"""A product value a test file changes at import decides what every later test sees (adversary F-30).

The attack in two steps: task A lands a test file that sets `calc._op = operator.add` at import while `_op`
already is `operator.add` (a no-op: every check of A passes, and `operator.add` has no file a check could
judge it by). Task B then changes only `calc.py` (`_op = operator.sub`): main's own test file, A's, puts
`operator.add` back for every test, and B's broken `add` passes. The reporter notes what each product module
holds when its own import ends (a finder in front of the import system); once the test modules are imported,
a value that is something else is sent, and the gate blocks unless main's own collection shows the same.
Each attack lands with `product_values` switched off (liveness). Real git, bwrap, pytest and the reporter.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from gate_kit import PYTEST, branch, check
from gitrepo import make_repo, run_git

from cockpit.factory.gates import DEFENCES, PRODUCT_PATCHED

CALC = "import operator\n\n_op = operator.add\n\n\ndef add(a, b):\n    return _op(a, b)\n"
CALC_BAD = "import operator\n\n_op = operator.sub\n\n\ndef add(a, b):\n    return _op(a, b)\n"
DORMANT = ("import operator\n\nimport calc\n\n# the table of operations the tests use\ncalc._op = operator.add\n\n\n"
           "def test_op_table():\n    assert calc._op(1, 1) == 2\n")
CALC_TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
              "def test_add_negative():\n    assert add(-2, 1) == -1\n")
BASE = {"calc.py": CALC, "pytest.ini": "[pytest]\npythonpath = .\n", "tests/test_calc.py": CALC_TESTS}
# every defence that could see a product value replaced at import, off on the liveness side
NEAR = ["product_values", "product_patch", "product_replaced"]


@pytest.fixture
def repo():
    d = Path(tempfile.mkdtemp(prefix="cockpit-values-", dir="/var/tmp"))
    yield make_repo(d / "repo", BASE)
    shutil.rmtree(d, ignore_errors=True)


def _broken(repo, sha):
    """B's add really is broken: main's test file fails on it, run plainly outside the gate."""
    import subprocess
    import sys
    wt = Path(tempfile.mkdtemp(prefix="cockpit-values-wt-", dir="/var/tmp"))
    try:
        run_git(repo, "worktree", "add", "-q", "--detach", str(wt / "t"), sha)
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_calc.py"],
                           cwd=wt / "t", capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                                               "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        assert r.returncode == 1, r.stdout
    finally:
        run_git(repo, "worktree", "remove", "--force", str(wt / "t"))
        shutil.rmtree(wt, ignore_errors=True)


async def test_a_dormant_patch_landed_first_puts_the_product_right_for_a_later_break(repo, gate):
    a = branch(repo, {"tests/test_aaa_ops.py": DORMANT})
    ra = await check(gate, repo, a)
    assert ra.action == "pass", ra.text  # dormant: a write of what the value already is changes nothing
    run_git(repo, "merge", "-q", "--ff-only", a)
    b = branch(repo, {"calc.py": CALC_BAD})
    _broken(repo, b)
    landed = await check(gate, repo, b, off=["product_values"])
    assert landed.action == "pass", f"liveness: main's test file puts operator.add back:\n{landed.text}"
    res = await check(gate, repo, b)
    assert res.action == "block" and PRODUCT_PATCHED in res.reasons, res.text
    assert "calc._op: not what the product's own import left" in res.text, res.text


async def test_a_dormant_patch_ahead_on_the_merge_train(repo, gate):
    a = branch(repo, {"tests/test_aaa_ops.py": DORMANT})
    assert (await check(gate, repo, a)).action == "pass"
    b = branch(repo, {"calc.py": CALC_BAD})
    _broken(repo, b)
    for off in (["product_values", "main_apart"], []):
        gate.defences = set(DEFENCES) - set(off)
        try:
            res = await gate.check(repo, "main", b, PYTEST, ahead=[("T-A", a)])
        finally:
            gate.defences = set(DEFENCES)
        verdicts = [v for v in res.verdicts if v.get("gate") == "train"]
        if off:  # liveness: checked on top of A, B is green
            assert res.action == "pass" and not verdicts, res.text
        else:  # the train stage blocks; B alone on main fails its tests
            assert res.action != "pass", res.text
            assert any("calc._op: not what the product's own import left" in str(v.get("detail", ""))
                       for v in res.verdicts), res.verdicts


# other shapes of the same patch, each from a new test file against a broken product
SHAPES = {
    "module_dict": ({"calc.py": CALC_BAD}, "import operator\nimport calc\n\nvars(calc)['_op'] = operator.add\n",
                    "calc._op"),
    "dict_item": ({"calc.py": "import operator\n\nOPS = {'+': operator.sub}\n\n\ndef add(a, b):\n"
                              "    return OPS['+'](a, b)\n"},
                  "import operator\nimport calc\n\ncalc.OPS['+'] = operator.add\n", "calc.OPS[...]"),
    "class_attribute": ({"calc.py": "import operator\n\n\nclass Calc:\n    op = staticmethod(operator.sub)\n\n\n"
                                    "def add(a, b):\n    return Calc.op(a, b)\n"},
                        "import operator\nimport calc\n\ncalc.Calc.op = staticmethod(operator.add)\n", "calc.Calc.op"),
    "past_the_watch": ({"calc.py": CALC_BAD},
                       "import operator\nimport sys\n\n_f = sys.meta_path.pop(0)\nimport calc  # noqa: E402\n"
                       "sys.meta_path.insert(0, _f)\ncalc._op = operator.add\n", "calc (imported past the watch)"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_other_shapes_of_a_product_value_set_at_import(repo, gate, shape):
    product, patch, what = SHAPES[shape]
    sha = branch(repo, {**product, "tests/test_aaa_ops.py": patch + "\n\ndef test_ops():\n    assert True\n"})
    _broken(repo, sha)
    landed = await check(gate, repo, sha, off=NEAR)
    assert landed.action == "pass", f"liveness: main's tests pass on the patched product:\n{landed.text}"
    res = await check(gate, repo, sha, off=["product_patch", "product_replaced"])
    assert res.action == "block" and PRODUCT_PATCHED in res.reasons, res.text
    assert what in res.text, res.text


REGISTRY = {
    "calc.py": CALC + "\nOPS = {'+': add}\nHOOKS = []\n_cache = None\n\n\ndef warm():\n"
                      "    global _cache\n    _cache = {}\n    OPS['*'] = lambda a, b: a * b\n",
    "extra.py": "import calc\n\ncalc.OPS['-'] = lambda a, b: a - b\ncalc.HOOKS.append('extra')\n",
    "wiring.py": "import calc\nimport extra  # noqa: F401\n\ncalc.HOOKS.append('wiring')\n",
}


async def test_what_a_product_does_to_itself_passes(repo, gate):
    """Registries that grow when another product module is imported, a module that wires another as it is
    imported, a product function a test calls that rebinds its own globals or fills a dict: none of it is a test
    file setting a value, and none blocks."""
    sha = branch(repo, {**REGISTRY, "tests/test_extra.py": (
        "import calc\nimport extra  # noqa: F401\n\n\ndef test_registry():\n    calc.warm()\n"
        "    assert calc.OPS['-'](3, 1) == 2 and calc.OPS['*'](2, 3) == 6\n"),
        "tests/test_wiring.py": "import wiring  # noqa: F401\nimport calc\n\n\ndef test_hooks():\n"
                                "    assert 'wiring' in calc.HOOKS\n"})
    res = await check(gate, repo, sha)
    assert res.action == "pass", res.text


async def test_a_value_main_itself_sets_at_import_is_main_s_own(repo, gate):
    """Main's test file that sets a product value at import shows it in main's own collection: a change that
    leaves it alone passes."""
    setting = branch(repo, {"calc.py": CALC + "\nMODE = 'slow'\n",
                            "tests/test_mode.py": "import calc\n\ncalc.MODE = 'fast'\n\n\ndef test_mode():\n"
                                                  "    assert calc.MODE == 'fast'\n"})
    first = await check(gate, repo, setting)
    assert first.action == "block" and "calc.MODE: not what the product's own import left" in first.text
    run_git(repo, "merge", "-q", "--ff-only", setting)  # a human let it land
    other = branch(repo, {"calc.py": CALC + "\nMODE = 'slow'\n\n\ndef double(a):\n    return add(a, a)\n"})
    res = await check(gate, repo, other)
    assert res.action == "pass", res.text


# the same dormant patch, moved into a test's body: it runs before main's tests and nothing undoes it
DORMANT_IN_A_TEST = ("import operator\n\nimport calc\n\n\ndef test_aaa_op_table():\n"
                     "    calc._op = operator.add  # the table of operations the tests use\n"
                     "    assert calc._op(1, 1) == 2\n")


async def test_a_dormant_patch_in_a_test_body_landed_first(repo, gate):
    a = branch(repo, {"tests/test_aaa_ops.py": DORMANT_IN_A_TEST})
    ra = await check(gate, repo, a)
    assert ra.action == "pass", ra.text  # leaves _op what calc.py binds anyway: nothing to see
    run_git(repo, "merge", "-q", "--ff-only", a)
    b = branch(repo, {"calc.py": CALC_BAD})
    _broken(repo, b)
    landed = await check(gate, repo, b, off=["product_values"])
    assert landed.action == "pass", f"liveness: main's test puts operator.add back before main's others:\n{landed.text}"
    res = await check(gate, repo, b)
    assert res.action == "block" and PRODUCT_PATCHED in res.reasons, res.text
    assert ("calc._op: left replaced by tests/test_aaa_ops.py::test_aaa_op_table, while this change rebinds _op "
            "in calc.py") in res.text, res.text
    # a change to calc.py that leaves _op alone is not what that test hides
    c = branch(repo, {"calc.py": CALC + "\n\ndef double(a):\n    return add(a, a)\n"})
    assert (await check(gate, repo, c)).action == "pass"


async def test_a_test_of_the_change_that_leaves_a_product_function_replaced(repo, gate):
    sha = branch(repo, {"calc.py": CALC_BAD, "tests/test_aaa_ops.py": DORMANT_IN_A_TEST})
    _broken(repo, sha)
    landed = await check(gate, repo, sha, off=NEAR)
    assert landed.action == "pass", f"liveness:\n{landed.text}"
    res = await check(gate, repo, sha, off=["product_patch", "product_replaced"])
    assert res.action == "block" and PRODUCT_PATCHED in res.reasons, res.text
    assert "calc._op: left replaced by tests/test_aaa_ops.py::test_aaa_op_table, a test of this change" in res.text


async def test_patches_undone_and_a_product_s_own_state_pass(repo, gate):
    """monkeypatch, mock.patch and a test that puts the value back leave nothing replaced; a lazily built
    singleton (a value that was None at import) is the product's own state."""
    sha = branch(repo, {"calc.py": CALC_BAD.replace("operator.sub", "operator.add") + "\n_inst = None\n\n\n"
                                   "def inst():\n    global _inst\n    _inst = _inst or object()\n    return _inst\n",
                        "tests/test_aaa_ops.py": (
                            "import operator\nfrom unittest import mock\n\nimport calc\n\n\n"
                            "def test_mp(monkeypatch):\n    monkeypatch.setattr(calc, '_op', operator.mul)\n"
                            "    assert calc.add(2, 3) == 6\n\n\ndef test_mock():\n"
                            "    with mock.patch.object(calc, '_op', operator.mul):\n        assert calc.add(2, 3) == 6\n\n\n"
                            "def test_by_hand():\n    was = calc._op\n    calc._op = operator.mul\n    try:\n"
                            "        assert calc.add(2, 3) == 6\n    finally:\n        calc._op = was\n\n\n"
                            "def test_singleton():\n    assert calc.inst() is calc.inst()\n")})
    res = await check(gate, repo, sha)
    assert res.action == "pass", res.text
