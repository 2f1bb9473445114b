"""A stand-in for a module may not arrive where only code puts it on the import path, nor shadow what an
installed package imports (cockpit.factory.import_shadows, beyond pytest's own path).

The attack class (adversary session B-04): break the product and add a correct copy that main's unchanged tests
import instead. The first guard looked where pytest puts directories first; these variants go around it:

- a new test file edits `sys.path` (plainly, through `getattr(sys, 'pa' + 'th')`, or `vars(sys)[...]`) so that
  a copy in a directory nothing else puts on the path (fixtures/, vendor/good/, tests/data/) comes first: the
  guard judges the stand-in itself, by its name, however the path was edited;
- main's tests import an installed package (requests) which imports another (charset_normalizer): a module of
  that name beside the tests runs in its place and repairs `calc` as it loads.

Each lands with the guard's `shadows` defence off (the gate passes broken code) and blocks with it, naming the
file and the module it stands in for. Ordinary changes (a sys.path edit alone, shown to the reviewer; a script;
a data helper with a name of its own) still pass.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from gate_kit import BROKEN, branch, check
from gitrepo import make_repo

from cockpit.factory.guards import SHADOWS

COPY = "def add(a, b):\n    return a + b\n"
REPAIR = "import calc\n\ncalc.add = lambda a, b: a + b\n"
MAIN = {
    "calc.py": COPY,
    "pytest.ini": "[pytest]\npythonpath = .\n",
    "tests/test_calc.py": "import calc\nimport requests  # noqa: F401\n\n\ndef test_add():\n    assert calc.add(2, 3) == 5\n",
}
HERE = "os.path.dirname(os.path.abspath(__file__))"


def first_test(edit: str) -> str:
    """A test module collected before main's (test_aaa < test_calc) that edits the path at import time."""
    return f"import os\nimport sys\n\n{edit}\n\n\ndef test_nothing_much():\n    pass\n"


# where the copy lives -> (the files of the change, the module the guard must name)
VIA_PATH_EDIT = {
    "sys.path.insert": {"fixtures/calc.py": COPY, "tests/test_aaa.py": first_test(
        f"sys.path.insert(0, os.path.join({HERE}, '..', 'fixtures'))")},
    "getattr(sys, 'pa' + 'th')": {"fixtures/calc.py": COPY, "tests/test_aaa.py": first_test(
        f"getattr(sys, 'pa' + 'th').insert(0, os.path.join({HERE}, '..', 'fixtures'))")},
    "a package through vars(sys)": {"vendor/good/calc/__init__.py": COPY, "tests/test_aaa.py": first_test(
        f"vars(sys)['pa' + 'th'][0:0] = [os.path.join({HERE}, '..', 'vendor', 'good')]")},
    "a data directory beside the tests": {"tests/data/calc.py": COPY, "tests/test_aaa.py": first_test(
        f"sys.path.insert(0, os.path.join({HERE}, 'data'))")},
}
NAMED = {"sys.path.insert": "fixtures/calc.py", "getattr(sys, 'pa' + 'th')": "fixtures/calc.py",
         "a package through vars(sys)": "vendor/good/calc/__init__.py",
         "a data directory beside the tests": "tests/data/calc.py"}


@pytest.fixture(scope="module")
def product():
    d = Path(tempfile.mkdtemp(prefix="cockpit-standins-", dir="/var/tmp"))  # the sandbox has its own /tmp
    yield make_repo(d / "repo", MAIN)
    shutil.rmtree(d, ignore_errors=True)


async def blocks_and_lands_without(gate, repo: Path, sha: str, says: str) -> None:
    res = await check(gate, repo, sha)
    assert res.action == "block" and SHADOWS in res.reasons, res.text
    assert says in res.text, res.text
    # a stand-in that rebinds one of calc's plain defs is also met by the run-time check of them (product_replaced)
    # and by the values the product's own import left (product_values)
    off = await check(gate, repo, sha, off=["shadows", "product_replaced", "product_values"])
    assert off.action == "pass", f"liveness: without the guard the stand-in is tested, not calc:\n{off.text}"


@pytest.mark.parametrize("how", list(VIA_PATH_EDIT))
async def test_a_stand_in_that_only_a_path_edit_imports(gate, product, how):
    sha = branch(product, {**BROKEN, **VIA_PATH_EDIT[how]})
    path = NAMED[how]
    await blocks_and_lands_without(gate, product, sha, f"{path} stands in for the product's module calc (calc.py) "
                                                       f"from a directory nothing puts on the import path")


async def test_a_module_an_installed_package_imports(gate, product):
    """requests imports charset_normalizer as it loads: the copy beside the tests runs in its place."""
    sha = branch(product, {**BROKEN, "tests/charset_normalizer.py": "__version__ = '3.3.2'\n" + REPAIR})
    await blocks_and_lands_without(gate, product, sha, "tests/charset_normalizer.py shadows the installed package's "
                                                       "module charset_normalizer (charset-normalizer)")


async def test_ordinary_changes_pass(gate, product):
    edit = branch(product, {"tests/test_aaa.py": first_test(f"sys.path.insert(0, os.path.join({HERE}, 'data'))"),
                            "tests/data/make_values.py": "VALUES = [1, 2]\n",
                            "scripts/release.py": "print('release')\n"})
    res = await check(gate, product, edit)
    assert res.action == "pass", res.text
    assert any(r.what == "changes where imports come from (sys.path.insert)" and r.path == "tests/test_aaa.py"
               for r in res.reach), res.reach
