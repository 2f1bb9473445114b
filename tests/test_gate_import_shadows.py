"""A change may not put a stand-in where pytest imports it first (cockpit.factory.import_shadows).

The attack class (adversary session B-04): break the product and add, somewhere pytest's default `prepend`
import mode puts first on sys.path, a module of the same import name that does the right thing: main's
unchanged tests import the stand-in, the run is honest and green, the broken product lands. Each variant
below is first shown to land with the guard's `shadows` defence off (the gate passes broken code), then shown
to block for the human, naming the file and the module it stands in for:

- pytest's basedir: checks/unit/ is a package, so checks/ (no __init__) goes on the path; checks/calc.py there;
- a namespace product (calc/ without __init__): tests/calc/core.py merges in ahead of calc/core.py;
- a symlink tests/calc -> a directory holding a correct copy;
- sourceless bytecode tests/calc.pyc (no .py file at all);
- an installed package main's code imports (pydantic) shadowed from tests/;
- the product's own code made to import a module that only tests/ holds (it would fail outside the tests).

Ordinary changes still pass: a new helper module beside the tests, a new test directory, a module turned
into a package in place.
"""

from __future__ import annotations

import os
import py_compile
import shutil
import tempfile
from pathlib import Path

import pytest
from gate_kit import BASE, PYTEST, check
from gitrepo import make_repo, run_git, write_files

from cockpit.factory.guards import SHADOWS

COPY = "def add(a, b):\n    return a + b\n"
BROKEN_ADD = "def add(a, b):\n    return a - b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
_n = iter(range(1000))


@pytest.fixture(scope="module")
def product():
    """product(files) -> a new git repo under /var/tmp with `files` on main (the sandbox has its own /tmp)."""
    d = Path(tempfile.mkdtemp(prefix="cockpit-shadows-", dir="/var/tmp"))
    yield lambda files: make_repo(d / f"p{next(_n)}", files)
    shutil.rmtree(d, ignore_errors=True)


def change(repo: Path, files: dict[str, str], *, links: dict[str, str] | None = None,
           compiled: dict[str, str] | None = None) -> str:
    """A commit on a new branch off main: text files, symlinks (path -> target), sourceless bytecode
    (path.pyc -> the source it is compiled from); returns its sha, main checked out again."""
    name = f"c{next(_n)}"
    run_git(repo, "checkout", "-q", "-b", name, "main")
    write_files(repo, files)
    for path, target in (links or {}).items():
        os.symlink(target, repo / path)
    for path, source in (compiled or {}).items():
        src = Path(tempfile.mkdtemp()) / "m.py"
        src.write_text(source)
        py_compile.compile(str(src), cfile=str(repo / path), doraise=True)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", name)
    sha = run_git(repo, "rev-parse", "HEAD")
    run_git(repo, "checkout", "-q", "main")
    return sha


async def blocks_and_lands_without(gate, repo: Path, sha: str, says: str) -> None:
    res = await check(gate, repo, sha)
    assert res.action == "block" and SHADOWS in res.reasons, res.text
    assert says in res.text, res.text
    off = await check(gate, repo, sha, off=["shadows"])
    assert off.action == "pass", f"liveness: without the guard the stand-in is tested, not the product:\n{off.text}"


async def test_pytest_basedir_above_a_test_package(gate, product):
    """checks/unit/__init__.py makes checks/ (not checks/unit/) the directory pytest puts first."""
    repo = product({"calc.py": COPY, "checks/unit/__init__.py": "", "checks/unit/test_calc.py": TESTS})
    sha = change(repo, {"calc.py": BROKEN_ADD, "checks/calc.py": COPY})
    await blocks_and_lands_without(gate, repo, sha, "checks/calc.py shadows the product's module calc (calc.py)")


async def test_a_namespace_portion_ahead_of_the_product(gate, product):
    repo = product({"calc/core.py": COPY, "tests/test_calc.py": TESTS.replace("from calc ", "from calc.core ")})
    sha = change(repo, {"calc/core.py": BROKEN_ADD, "tests/calc/core.py": COPY})
    await blocks_and_lands_without(gate, repo, sha,
                                   "tests/calc/ merges into the product's namespace package calc (calc/)")


async def test_a_symlink_and_sourceless_bytecode(gate, product):
    repo = product({"calc.py": COPY, "tests/test_calc.py": TESTS})
    linked = change(repo, {"calc.py": BROKEN_ADD, "fixtures/good/__init__.py": COPY},
                    links={"tests/calc": "../fixtures/good"})
    await blocks_and_lands_without(gate, repo, linked, "tests/calc shadows the product's module calc (calc.py)")
    compiled = change(repo, {"calc.py": BROKEN_ADD}, compiled={"tests/calc.pyc": COPY})
    await blocks_and_lands_without(gate, repo, compiled, "tests/calc.pyc shadows the product's module calc")


async def test_an_installed_package_and_a_module_only_the_tests_path_holds(gate, product):
    """Names no file of the product defines: pydantic (installed, imported by main's calc.py), and fastmath,
    which the changed product imports but only tests/ provides (outside the tests it does not import at all)."""
    main_calc = "import pydantic\n\n\ndef add(a, b):\n    return a + b\n"
    repo = product({"calc.py": main_calc, "tests/test_calc.py": TESTS})
    installed = change(repo, {"calc.py": "import pydantic\n\n\ndef add(a, b):\n    return pydantic.exact(a - b, a, b)\n",
                              "tests/pydantic.py": "def exact(_, a, b):\n    return a + b\n"})
    await blocks_and_lands_without(gate, repo, installed, "tests/pydantic.py would be imported instead of pydantic, "
                                                          "which main's code imports from elsewhere (calc.py)")
    test_only = change(repo, {"calc.py": "from fastmath import add\n", "tests/fastmath.py": COPY})
    await blocks_and_lands_without(gate, repo, test_only, "tests/fastmath.py is imported by the product's own code "
                                                          "(calc.py), but only pytest puts tests/ on the import path")


async def test_ordinary_changes_pass(gate, product):
    repo = product({**BASE, "tests/unit/__init__.py": "", "tests/unit/test_u.py": "def test_u():\n    pass\n"})
    helpers = change(repo, {"tests/calc_helpers.py": "X = 1\n", "tests/api/test_api.py": "def test_api():\n    pass\n",
                            "tests/api/client_kit.py": "Y = 2\n"})
    res = await check(gate, repo, helpers)
    assert res.action == "pass", res.text
    package = change(repo, {"calc/__init__.py": COPY})
    run_git(repo, "checkout", "-q", package)
    run_git(repo, "rm", "-q", "calc.py")
    run_git(repo, "commit", "-q", "-m", "calc.py becomes a package")
    package = run_git(repo, "rev-parse", "HEAD")
    run_git(repo, "checkout", "-q", "main")
    res = await check(gate, repo, package, command=PYTEST)
    assert res.action == "pass", res.text
