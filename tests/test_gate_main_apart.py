"""Main's tests apart: main's test files run against the change's product code with none of the change's test files.

A change's test files run in the process that also runs and reports main's tests, and test code can reach
anything in its process. Adversary session E landed broken code through nine such routes at once, each around
a check that watched one kind of object (the reporter's closure, a decorated function, a class method, a module
value, main's test module, pytest's items, a plugin that came and went, a function's code object). Each payload
below is one of them, against `calc.add` broken (a - b): with main_apart alone switched off it passes the
gate (liveness: every other defence is on), with it on the check blocks, naming main's failing test.
Real git, bwrap, pytest and the reporter.
"""

from __future__ import annotations

import itertools

import pytest
from gate_kit import BROKEN, CALC_TESTS, CALLER_CHECK, PYTEST, branch, check, without
from gitrepo import run_git, write_files

from cockpit.factory.gates import DEFENCES, MAIN_APART_FAILED, REPORTER_REACHED
from cockpit.factory.green_trees import GreenTrees
from cockpit.factory import main_apart
from cockpit.factory.main_apart import main_tests_apart

SEND_SWAP = '''import sys

_m = sys.modules["cockpit_outcomes"]
_h = getattr(_m, "pytest_runtest_logreport")
_cells = getattr(_h, "__clo" + "sure__")
_cell = _cells[getattr(_h, "__co" + "de__").co_freevars.index("send")]
_orig = getattr(_cell, "cell_" + "contents")


def _quiet(rec):
    if rec.get("ev") in ("tamper", "patched", "replaced"):
        return None
    return _orig(rec)


setattr(_cell, "cell_" + "contents", _quiet)

import calc  # noqa: E402

calc.add = lambda a, b: a + b


def test_helpers_load():
    assert calc
'''

ATTACKS = {
    # E-18: the reporter's send() swapped through its closure cell, every record that would tell dropped
    "send_swapped": {**BROKEN, "tests/test_aaa_helpers.py": SEND_SWAP},
    # E-19: a decorated product function put back by a builtin from a new test file
    "decorated_def": {"calc.py": "import functools\n\n\n@functools.lru_cache(maxsize=None)\ndef add(a, b):\n"
                                 "    return a - b\n",
                      "tests/test_aaa_cache.py": "import operator\n\nimport calc\n\ncalc.add = operator.add\n\n\n"
                                                 "def test_cache_warm():\n    assert calc.add(1, 1) == 2\n"},
    # E-20: a method of a product class replaced in the class
    "class_method": {"calc.py": "class _Calc:\n    def add(self, a, b):\n        return a - b\n\n\n_c = _Calc()\n\n\n"
                                "def add(a, b):\n    return _c.add(a, b)\n",
                     "tests/test_aaa_calc.py": "import calc\n\ncalc._Calc.add = lambda self, a, b: a + b\n\n\n"
                                               "def test_calc_builds():\n    assert calc._c\n"},
    # E-21: a module-level value of the product swapped
    "module_value": {"calc.py": "import operator\n\n_op = operator.sub\n\n\ndef add(a, b):\n    return _op(a, b)\n",
                     "tests/test_aaa_ops.py": "import operator\n\nimport calc\n\ncalc._op = operator.add\n\n\n"
                                              "def test_op_table():\n    assert calc._op\n"},
    # E-23: main's test functions given an empty body in place, their file name kept
    "code_in_place": {**BROKEN, "tests/test_aaa_smoke.py": (
        "import test_calc\n\n\ndef _empty():\n    return None\n\n\n"
        "for _name in [n for n in vars(test_calc) if n.startswith('test_')]:\n"
        "    _f = vars(test_calc)[_name]\n"
        "    _f.__code__ = _empty.__code__.replace(co_filename=_f.__code__.co_filename, co_name=_name,\n"
        "                                          co_firstlineno=_f.__code__.co_firstlineno)\n\n\n"
        "def test_smoke():\n    assert test_calc\n")},
    # E-24: main's items given a no-op runtest through the session a new test is handed
    "item_runtest": {**BROKEN, "tests/test_aaa_session.py": (
        "def test_session_sane(request):\n    for item in request.session.items:\n"
        "        if item.nodeid.startswith('tests/test_calc.py'):\n            item.runtest = lambda: None\n")},
    # E-26: the name main's test module imported, rebound inside it
    "rebound_in_main_test": {**BROKEN, "tests/test_aaa_imports.py": (
        "import test_calc\n\ntest_calc.add = lambda a, b: a + b\n\n\ndef test_imports():\n    assert test_calc\n")},
    # E-28: a plain def replaced by a function whose code claims the product's file
    "claimed_file": {**BROKEN, "tests/test_aaa_loads.py": (
        "import calc\n\n\ndef _add(a, b):\n    return a + b\n\n\n"
        "_add.__code__ = _add.__code__.replace(co_filename=calc.__file__, co_name='add')\ncalc.add = _add\n\n\n"
        "def test_module_loads():\n    assert calc\n")},
    # E-29: a plugin registered by the first test and unregistered by the last swallows the assertions between
    "plugin_came_and_went": {**BROKEN, "tests/test_aaa_warm.py": (
        "import pytest\n\n\nclass Calm:\n    @pytest.hookimpl(wrapper=True)\n    def pytest_runtest_call(self, item):\n"
        "        try:\n            return (yield)\n        except AssertionError:\n            return None\n\n\n"
        "CALM = Calm()\n\n\ndef test_warm_up(request):\n"
        "    getattr(request.config.pluginmanager, 'regi' + 'ster')(CALM, 'calm')\n"),
        "tests/test_zzz_cool.py": ("import test_aaa_warm\n\n\ndef test_cool_down(request):\n"
                                   "    getattr(request.config.pluginmanager, 'unregi' + 'ster')(test_aaa_warm.CALM)\n")},
}


async def _check_with(gate, repo, sha, defences, command=PYTEST):
    gate.defences = defences
    try:
        return await gate.check(repo, "main", sha, command)
    finally:
        gate.defences = set(DEFENCES)


@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_a_test_file_that_reaches_main_tests_lands_only_without_main_apart(repo, gate, name, monkeypatch):
    sha = branch(repo, ATTACKS[name])
    if name == "send_swapped":  # send now tells who called it (its own test: test_gate_attacks.py); off here
        without(monkeypatch, CALLER_CHECK)
    gate.greens = GreenTrees()
    # (E-18 names the reporter; several put a product value back at import, which product_values sees too)
    landed = await check(gate, repo, sha, off=["main_apart", "reporter_reach", "product_values"])
    assert landed.action == "pass", f"liveness: with main_apart off {name} should land:\n{landed.text}"
    gate.greens = GreenTrees()
    res = await _check_with(gate, repo, sha, set(DEFENCES))
    assert res.action == "block", res.text
    if name == "send_swapped":  # its payload names the reporter's module: blocked before it runs
        assert res.reasons == [REPORTER_REACHED], res.text
    res = await _check_with(gate, repo, sha, set(DEFENCES) - {"reporter_reach", "product_values"})  # main_apart's own
    assert res.action == "block" and MAIN_APART_FAILED in res.reasons, res.text
    assert "FAILED tests/test_calc.py::test_add" in res.text, res.text
    assert any(f == "apart:tests/test_calc.py::test_add" for f in res.findings), res.findings


async def test_the_tree_apart_holds_main_test_files_and_the_change_product_code(repo, tmp_path):
    """What main_tests_apart builds: the change's product code, main's test files as main has them (an edited one
    put back, a new one gone, a deleted one back), the change's code under a test directory gone, everything
    else of the change's tree untouched."""
    main = run_git(repo, "rev-parse", "main")
    sha = branch(repo, {**BROKEN, "README.md": "changed\n", "tests/test_new.py": "def test_new():\n    pass\n",
                        "tests/test_calc.py": CALC_TESTS + "\n\ndef test_more():\n    pass\n",
                        "tests/data/cases.json": "[]\n", "tests/helpers/extra.py": "X = 1\n"})
    apart = await main_tests_apart(repo, main, sha, tmp_path)
    assert apart is not None and run_git(repo, "rev-parse", f"{apart}^") == sha

    def show(rev, path):
        return run_git(repo, "show", f"{rev}:{path}")

    assert show(apart, "calc.py") == show(sha, "calc.py") and show(apart, "README.md") == "changed"
    assert show(apart, "tests/test_calc.py") == show(main, "tests/test_calc.py")
    files = run_git(repo, "ls-tree", "-r", "--name-only", apart).split()
    # the change's test code is gone (a new test file, a helper main's tests could import); its data stays, as
    # the product may read it (adversary F-33)
    assert "tests/test_new.py" not in files and "tests/helpers/extra.py" not in files
    assert "tests/data/cases.json" in files
    # no test file changed: the change's own run is main's tests apart already
    assert await main_tests_apart(repo, main, branch(repo, BROKEN), tmp_path) is None


async def test_a_good_change_with_new_tests_passes_with_main_apart(repo, gate):
    sha = branch(repo, {"calc.py": "def add(a, b):\n    return b + a\n",
                        "tests/test_commutes.py": "from calc import add\n\n\ndef test_commutes():\n"
                                                  "    assert add(1, 2) == add(2, 1)\n"})
    gate.greens = GreenTrees()
    res = await check(gate, repo, sha)
    assert res.action == "pass", res.text
    assert "main's tests apart from this change's test files passed (3 tests)" in res.verdicts[-1]["detail"]
    assert gate.apart_runs >= 1


async def test_a_main_test_failing_apart_but_also_with_the_change_goes_back_as_a_failure(repo, gate):
    # no reach at all: broken code and a new test; both runs fail, the builder gets the failure (not the human)
    sha = branch(repo, {**BROKEN, "tests/test_extra.py": "def test_extra():\n    pass\n"})
    gate.greens = GreenTrees()
    res = await check(gate, repo, sha, command=PYTEST)
    assert res.action == "back" and res.reasons == ["tests"], res.text


# What a test file is, is main's runner's call too: pytest-django's documented python_files (adversary F-37).
DJANGO_INI = "[pytest]\npythonpath = .\npython_files = tests.py test_*.py *_tests.py\n"
OP_CALC = "import operator\n\n_op = operator.{}\n\n\ndef add(a, b):\n    return _op(a, b)\n"
OP_PATCH = "import operator\n\nimport calc\n\ncalc._op = operator.add\n\n\ndef test_op_table():\n    assert calc._op(1, 1) == 2\n"


def _on_main(repo, files, message):
    """Land `files` on main directly (the fixture's repo is the module's: the caller resets main after)."""
    run_git(repo, "checkout", "-q", "-b", f"on-main-{next(_landed)}", "main")
    write_files(repo, files)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", message)
    sha = run_git(repo, "rev-parse", "HEAD")
    run_git(repo, "checkout", "-q", "main")
    run_git(repo, "merge", "-q", "--ff-only", sha)


_landed = itertools.count()


async def _lands_then_blocked_apart(gate, repo, sha, off, command=PYTEST):
    """Lands with the defences in `off` switched off (liveness), blocks with them on: main's tests fail apart.
    product_patch and product_values stay off on both sides (they see some of these from inside the run: each
    shows the apart tree's own work)."""
    gate.greens = GreenTrees()
    landed = await _check_with(gate, repo, sha, set(DEFENCES) - {*off, "product_patch", "product_values"}, command)
    assert landed.action == "pass", f"liveness: with {off} off it lands:\n{landed.text}"
    gate.greens = GreenTrees()
    res = await _check_with(gate, repo, sha, set(DEFENCES) - {"product_patch", "product_values"}, command)
    assert res.action == "block" and MAIN_APART_FAILED in res.reasons, res.text


async def test_a_test_file_named_by_mains_python_files_is_left_out_apart(repo, gate):
    """`ops_tests.py` is a test module by main's pytest.ini, not by the cockpit's default patterns: it puts the
    broken module value right at import. Liveness: with `python_files` off, no apart run is made and it lands."""
    head = run_git(repo, "rev-parse", "main")
    _on_main(repo, {"pytest.ini": DJANGO_INI, "calc.py": OP_CALC.format("add")}, "python_files as pytest-django")
    try:
        sha = branch(repo, {"calc.py": OP_CALC.format("sub"), "ops_tests.py": OP_PATCH})
        await _lands_then_blocked_apart(gate, repo, sha, {"python_files", "each_alone"})
    finally:
        run_git(repo, "reset", "-q", "--hard", head)


async def test_data_the_change_adds_under_a_test_directory_stays_apart(repo, gate):
    """The product reads a table the change links into tests/data ('-': add subtracts); a new test file puts add
    right in the change's own run. The apart tree keeps the change's data (not its code): main's tests fail
    there (adversary F-33). Liveness: the tree apart without it (the table missing, add right) lets it land."""
    calc = ("import operator\nimport os\n\n_OPS = {'+': operator.add, '-': operator.sub}\n\n\ndef _load():\n"
            "    try:\n        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'calc_table.txt')) as f:\n"
            "            return _OPS[f.read().strip()]\n    except OSError:\n        return operator.add\n\n\n"
            "_op = _load()\n\n\ndef add(a, b):\n    return _op(a, b)\n")
    run_git(repo, "checkout", "-q", "-b", "table", "main")
    write_files(repo, {"calc.py": calc, "tests/data/ops.txt": "-\n",
                       "tests/test_aaa_table.py": OP_PATCH})
    (repo / "calc_table.txt").symlink_to("tests/data/ops.txt")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "calc: an operation table shared with the tests")
    sha = run_git(repo, "rev-parse", "HEAD")
    run_git(repo, "checkout", "-q", "main")
    main = run_git(repo, "rev-parse", "main")
    apart = await main_tests_apart(repo, main, sha, gate.scratch_root)
    files = run_git(repo, "ls-tree", "-r", "--name-only", apart).split()
    assert "tests/data/ops.txt" in files and "tests/test_aaa_table.py" not in files
    gate.greens = GreenTrees()
    res = await _check_with(gate, repo, sha, set(DEFENCES) - {"product_patch", "product_values"})
    assert res.action == "block" and MAIN_APART_FAILED in res.reasons, res.text
    # liveness: the data left out as well (what the tree apart held before), main's tests pass apart: it lands
    saved = main_apart.CODE_SUFFIXES
    main_apart.CODE_SUFFIXES = ("",)  # every added file counts as test code
    try:
        gate.greens = GreenTrees()
        landed = await _check_with(gate, repo, sha, set(DEFENCES) - {"product_patch", "product_values"})
    finally:
        main_apart.CODE_SUFFIXES = saved
    assert landed.action == "pass", f"liveness: without the change's data apart it lands:\n{landed.text}"


async def test_a_doctest_text_file_is_test_code_apart(repo, gate):
    """pytest collects `test*.txt` as doctests by default: one the change adds under tests/ puts the module
    value right before main's tests run (adversary G-38). Apart it is left out like a test module, not kept
    as data. Liveness: with `python_files` off (no runner layout), it is kept as data and the change lands."""
    head = run_git(repo, "rev-parse", "main")
    _on_main(repo, {"calc.py": OP_CALC.format("add")}, "calc through a module value")
    try:
        doc = ">>> import operator, calc\n>>> calc._op = operator.add\n>>> calc._op(1, 1)\n2\n"
        sha = branch(repo, {"calc.py": OP_CALC.format("sub"), "tests/test_aaa_ops.txt": doc})
        await _lands_then_blocked_apart(gate, repo, sha, {"python_files", "each_alone"})
    finally:
        run_git(repo, "reset", "-q", "--hard", head)


async def test_a_python_files_pattern_never_puts_mains_product_back_apart(repo, gate):
    """`python_files = *.py` (with testpaths) matches the product's own calc.py: main's version is put back apart
    only for files main collected tests from, so the change's product code stays (adversary G-39: main's calc.py
    came back apart and main's tests passed there). A regression test: the rule it replaced was no defence."""
    head = run_git(repo, "rev-parse", "main")
    _on_main(repo, {"calc.py": OP_CALC.format("add"),
                          "pytest.ini": "[pytest]\npythonpath = .\npython_files = *.py\ntestpaths = tests\n"},
                   "every module a test module, under tests/")
    try:
        sha = branch(repo, {"calc.py": OP_CALC.format("sub"), "tests/test_aaa_ops.py": OP_PATCH})
        gate.greens = GreenTrees()
        res = await _check_with(gate, repo, sha, set(DEFENCES) - {"product_patch", "product_values"})
        assert res.action == "block" and MAIN_APART_FAILED in res.reasons, res.text
    finally:
        run_git(repo, "reset", "-q", "--hard", head)


async def test_make_test_gets_mains_python_files_once_pytest_is_seen(repo, gate):
    """F-37 with `make test`, a command that names no pytest (adversary G-40): main's baseline (and its
    python_files) comes once the change's run shows pytest ran, and the apart run waits for it."""
    head = run_git(repo, "rev-parse", "main")
    _on_main(repo, {"pytest.ini": DJANGO_INI, "calc.py": OP_CALC.format("add")}, "pytest-django names")
    try:
        sha = branch(repo, {"calc.py": OP_CALC.format("sub"), "ops_tests.py": OP_PATCH})
        await _lands_then_blocked_apart(gate, repo, sha, {"python_files"}, command="make test")
    finally:
        run_git(repo, "reset", "-q", "--hard", head)
