"""The runner's functions changed in place: same identity, other code (what the identity watch cannot see).

B-01's class (the code under test rewrites what pytest reports) without replacing any attribute: the module
under test assigns a runner function's `__code__` (Function.runtest, pytest_pyfunc_call through a setattr
built at run time, call_and_report). The function object stays the one the watch snapshotted, so
only the audit hook sees it: CPython raises `object.__setattr__` for a function's `__code__`/`__defaults__`
and `code.__new__` for `code.replace`. Each variant lands with `runner_intact` (and `raw_outcomes`) off, and is
caught with them on. An ordinary suite that sets `__defaults__`/`__code__` on its own functions is not flagged.
"""

from __future__ import annotations

import pytest
from gate_kit import BROKEN, PYTEST, branch, check

from cockpit.factory.evidence import CONTRADICTS

_IMPORT = "import importlib\nimport sys\n\n"
PATCHES = {
    # Function.runtest's code swapped for one that swallows the test's exception
    "Function.runtest.__code__": (
        _IMPORT + "_m = importlib.import_module('_py' + 'test.python')\n\n\n"
        "def _runtest(self):\n    try:\n        self.ihook.pytest_pyfunc_call(pyfuncitem=self)\n"
        "    except Exception:\n        pass\n\n\n"
        "_m.Function.runtest.__code__ = _runtest.__code__\n"),
    # pytest_pyfunc_call's code swapped via setattr with names built at run time
    "pytest_pyfunc_call via setattr": (
        _IMPORT + "_m = importlib.import_module('_py' + 'test.python')\n\n\n"
        "def _call(pyfuncitem):\n    try:\n        pyfuncitem.obj(**{a: pyfuncitem.funcargs[a] for a in "
        "pyfuncitem._fixtureinfo.argnames})\n    except Exception:\n        pass\n    return True\n\n\n"
        "setattr(getattr(_m, 'pytest_' + 'pyfunc_call'), '__co' + 'de__', _call.__code__)\n"),
    # call_and_report's code swapped for one that says "passed" (its globals stay _pytest.runner's)
    "call_and_report.__code__": (
        _IMPORT + "_r = importlib.import_module('_py' + 'test.runner')\n\n\n"
        "def _car(item, when, log=True, **kwds):\n"
        "    hook = getattr(item.ihook, 'pytest_runtest_' + when)\n"
        "    call = CallInfo.from_call(lambda: hook(item=item, **kwds), when=when, reraise=None)\n"
        "    report = item.ihook.pytest_runtest_makereport(item=item, call=call)\n"
        "    report.outcome, report.longrepr = 'passed', None\n"
        "    if log:\n        item.ihook.pytest_runtest_logreport(report=report)\n    return report\n\n\n"
        "_r.call_and_report.__code__ = _car.__code__\n"),
}


@pytest.mark.parametrize("name", list(PATCHES))
async def test_a_runner_function_changed_in_place(repo, gate, name):
    sha = branch(repo, {"calc.py": PATCHES[name] + "\n\n" + BROKEN["calc.py"]})
    off = await check(gate, repo, sha, off=["runner_intact", "raw_outcomes"])
    assert off.action == "pass", f"liveness: with the watch off the change should land:\n{off.text}"
    res = await check(gate, repo, sha)
    assert res.action != "pass" and CONTRADICTS in res.reasons, res.text
    assert "changed in place" in res.text, res.text


async def test_own_functions_changed_in_place_are_not_flagged(repo, gate):
    own = ("def f(a=1):\n    return a\n\n\ndef g():\n    return 7\n\n\n"
           "def test_own_function_code_and_defaults():\n    f.__defaults__ = (2,)\n    assert f() == 2\n"
           "    f.__code__ = g.__code__\n    assert f() == 7\n    f.__kwdefaults__ = None\n"
           "    assert g.__code__.replace(co_name='h').co_name == 'h'\n")
    res = await check(gate, repo, branch(repo, {"tests/test_own.py": own}), command=PYTEST)
    assert res.action == "pass", res.text
