"""The runner watch tells the environment's plugins from the code under test (pytest's plugin autoload on).

pytest loads the plugins installed in the environment (entry points) at start, and some of them patch pytest
itself: hypothesis's plugin replaces `_pytest.fixtures.FixtureFunctionMarker.__call__` when it is imported.
The watch on the runner's code (B-01) took that for the code under test changing the runner, so with pytest's
default autoload every honest run in an environment with hypothesis installed "contradicted itself" and blocked.
The watch now starts again when the environment's plugins are in and before the first conftest: what an
installed package changed by then is accepted; the tree's code still runs only later, and is still caught.
Variants, each landing with the watch off (liveness) and caught with it on, autoload on: the B-01 payload in
the module under test, a module function of `_pytest.runner` replaced, and the tree's replacement compiled
under a file name inside site-packages (to look installed).
"""

from __future__ import annotations

import sys
import sysconfig

import pytest
from gate_kit import BROKEN, branch, check

from cockpit.factory.evidence import CONTRADICTS

AUTOLOAD = f"{sys.executable} -m pytest -q -p no:cacheprovider"  # pytest's default: installed plugins load
HONEST = ("import pytest\nfrom _pytest import fixtures\n\nfrom calc import add\n\n\n@pytest.fixture\n"
          "def two():\n    return 2\n\n\n"
          "def test_the_environment_patched_pytest():\n"
          "    # liveness: an installed plugin really changed the runner's code in this run\n"
          "    assert fixtures.FixtureFunctionMarker.__call__.__module__ == '_hypothesis_pytestplugin'\n\n\n"
          "@pytest.mark.parametrize('x', [1, 2])\ndef test_add(x, two, tmp_path):\n    assert add(x, two) == x + 2\n")
SWALLOW = ("def _swallow(orig):\n    def runtest(self):\n        try:\n            orig(self)\n"
           "        except Exception:\n            pass\n    return runtest\n")
PATCHES = {
    "Function.runtest swallowed": ("import importlib\n\n\n" + SWALLOW
                                   + "\n\n_m = importlib.import_module('_py' + 'test.python')\n"
                                   "_m.Function.runtest = _swallow(_m.Function.runtest)\n"),
    "a module function of the runner": (
        "import importlib\n_r = importlib.import_module('_py' + 'test.runner')\n_orig = _r.call_and_report\n\n\n"
        "def call_and_report(item, when, log=True, **kw):\n    rep = _orig(item, when, log=False, **kw)\n"
        "    rep.outcome = 'passed'\n    rep.longrepr = None\n    if log:\n"
        "        item.ihook.pytest_runtest_logreport(report=rep)\n    return rep\n\n\n"
        "_r.call_and_report = call_and_report\n"),
    "compiled to look installed": (
        "import importlib\n_ns = {}\n"
        f"exec(compile({SWALLOW!r}, {sysconfig.get_paths()['purelib'] + '/hypothesis/_x.py'!r}, 'exec'), _ns)\n"
        "_m = importlib.import_module('_py' + 'test.python')\n"
        "_m.Function.runtest = _ns['_swallow'](_m.Function.runtest)\n"),
}


async def test_an_installed_plugin_that_patches_pytest_is_not_the_code_under_test(repo, gate):
    __import__("_hypothesis_pytestplugin")  # installed with the cockpit's dev extras (pyproject): the run loads it
    res = await check(gate, repo, branch(repo, {"tests/test_env.py": HONEST}), command=AUTOLOAD)
    assert res.action == "pass", res.text


@pytest.mark.parametrize("name", list(PATCHES))
async def test_the_code_under_test_patching_the_runner_is_still_caught(repo, gate, name):
    sha = branch(repo, {"calc.py": PATCHES[name] + "\n\n" + BROKEN["calc.py"]})
    off = await check(gate, repo, sha, off=["runner_intact", "raw_outcomes"], command=AUTOLOAD)
    assert off.action == "pass", f"liveness: with the watch off the patch should land:\n{off.text}"
    res = await check(gate, repo, sha, command=AUTOLOAD)
    assert res.action != "pass" and CONTRADICTS in res.reasons, res.text
    assert "the code under test changed the test runner" in res.text, res.text
