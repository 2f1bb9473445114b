"""The code under test may not change the test runner (the reporter's audit hook and its watch on the runner's code).

The attack (adversary session B-01): the module under test replaces pytest's `Function.runtest` with one that
swallows the test's exception; every failing test reports "passed", the signed stream agrees with itself, exit
0, and the broken `add` lands. Only the product module changes (no test, conftest or config), and the import is
built at run time, so no scan of the source sees it. Variants: `setattr` on the class, the method deleted and
put back, pytest's own monkeypatch used on the runner, a module-level function of `_pytest.runner` replaced,
`unittest.TestCase.run` patched, the class's dict reached through `gc.get_referents`. Each lands with the
defence off (`runner_intact`: the cockpit ignores what the reporter saw); none with it on. Ordinary suites are
not flagged: a test setting attributes on its own classes, monkeypatch and unittest.mock on product code.
"""

from __future__ import annotations

import pytest
from gate_kit import BROKEN, PYTEST, branch, check

from cockpit.factory.evidence import CONTRADICTS

SWALLOW = ("\n\ndef _swallow(orig):\n    def runtest(self):\n        try:\n            orig(self)\n"
           "        except Exception:\n            pass\n    return runtest\n\n\n")
_PY = "importlib.import_module('_py' + 'test.python')"
PATCHES = {
    "class attribute": f"import importlib\n{SWALLOW}_m = {_PY}\n_m.Function.runtest = _swallow(_m.Function.runtest)\n",
    "setattr built at run time": (f"import importlib\n{SWALLOW}_m = {_PY}\n"
                                  "setattr(getattr(_m, 'Func' + 'tion'), 'run' + 'test', _swallow(_m.Function.runtest))\n"),
    "pytest's own monkeypatch": (f"import importlib\nfrom _pytest.monkeypatch import MonkeyPatch\n{SWALLOW}_m = {_PY}\n"
                                 "MonkeyPatch().setattr(_m.Function, 'runtest', _swallow(_m.Function.runtest))\n"),
    "a module function of the runner": (
        "import importlib\n_r = importlib.import_module('_py' + 'test.runner')\n_orig = _r.call_and_report\n\n\n"
        "def call_and_report(item, when, log=True, **kw):\n    rep = _orig(item, when, log=False, **kw)\n"
        "    rep.outcome = 'passed'\n    rep.longrepr = None\n    if log:\n"
        "        item.ihook.pytest_runtest_logreport(report=rep)\n    return rep\n\n\n"
        "_r.call_and_report = call_and_report\n"),
    # the watch compares each owner's attributes in C (operator.is_not over a tuple): the code under test replaces
    # it first, so a check that looked it up at call time would see no change (pytest itself does not use it)
    "the watch's own tools blinded first": (
        f"import importlib, operator\n{SWALLOW}operator.is_not = lambda a, b: False\n"
        f"_m = {_PY}\n_m.Function.runtest = _swallow(_m.Function.runtest)\n"),
    "the class dict through gc": (f"import importlib\n{SWALLOW}_m = {_PY}\n"
                                  "_g = getattr(__import__('g' + 'c'), 'get_' + 'referents')\n"
                                  "_d = _g(_m.Function.__dict__)[0]\n"
                                  "_d['runtest'] = _swallow(_m.Function.runtest)\n"),
}


def _module(patch: str) -> dict[str, str]:
    return {"calc.py": patch + "\n\n" + BROKEN["calc.py"]}


@pytest.mark.parametrize("name", list(PATCHES))
async def test_the_module_under_test_patches_the_runner(repo, gate, name):
    sha = branch(repo, _module(PATCHES[name]))
    # a rewritten report is also seen by the raw-outcome check: off too, to see this one land
    off = await check(gate, repo, sha, off=["runner_intact", "raw_outcomes"])
    if name != "the class dict through gc":  # (that one needs the type's cache cleared to take effect: it may not)
        assert off.action == "pass", f"liveness: with the defence off the patch should land:\n{off.text}"
    res = await check(gate, repo, sha)
    assert res.action != "pass" and CONTRADICTS in res.reasons, res.text
    assert "the code under test changed the test runner" in res.text


async def test_unittest_case_run_patched(repo, gate):
    """A unittest-style suite's runner is the runner too (add itself is correct here: the run exits 0, so the
    evidence is what judges it)."""
    tests = ("import unittest\n\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n"
             "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n")
    patch = "import unittest\n\n\ndef run(self, result=None):\n    return None\n\n\nunittest.TestCase.run = run\n"
    sha = branch(repo, {"tests/test_unit.py": tests, "calc.py": patch + "\n\ndef add(a, b):\n    return a + b\n"})
    res = await check(gate, repo, sha)
    assert res.action != "pass" and "unittest.case.TestCase.run replaced" in res.text, res.text


async def test_ordinary_suites_are_not_flagged(repo, gate):
    own = ("from unittest import mock\n\nimport calc\n\n\nclass Thing:\n    size = 1\n\n\n"
           "def test_own_class_attributes():\n    Thing.size = 2\n    del Thing.size\n    assert not hasattr(Thing, 'size')\n\n\n"
           "def test_monkeypatch_product_code(monkeypatch):\n    monkeypatch.setattr(calc, 'add', lambda a, b: 0)\n"
           "    assert calc.add(1, 1) == 0\n\n\n"
           "def test_mock_product_code():\n    with mock.patch.object(calc, 'add', return_value=7):\n"
           "        assert calc.add(1, 1) == 7\n    m = mock.MagicMock()\n    m.__len__.return_value = 3\n"
           "    assert len(m) == 3\n")
    res = await check(gate, repo, branch(repo, {"tests/test_ordinary.py": own}), command=PYTEST)
    assert res.action == "pass", res.text
