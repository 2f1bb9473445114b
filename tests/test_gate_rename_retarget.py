"""A test that follows a rename may not be pointed at other code than main's test called (suite identity).

The attack class (adversary session B-09): main's test of `add` is edited so that its body differs only in
names (`add` -> `total`), `add` is gone from the tree, so it counts as "renamed along with the code it tests";
but its import line, which is not part of its identity, takes `total` from elsewhere (a correct copy), while
the product's code is broken. Two defences now: the new name must be the old definition renamed in place
(same file or git's renamed file, same code but for the names), and main's copy of the test file still runs
against the candidate with the renames applied to it (`from calc import add` -> `from calc import total`).

Variants, each shown to land with the defences off (the gate passes broken code), then held:
- a correct copy in another module, the product's function broken under another name (the adversary's);
- the function renamed in place with the same code, but a helper it calls broken and the test importing a
  correct `total` from another module (the in-place check alone lets this through: the main copy holds it);
- the same with the module renamed too (calc.py -> arith.py): main's copy is renamed to `from arith import
  total` and holds it.
An honest rename (and an honest module rename) is still followed, its main copy run under the new names.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from gate_kit import BASE, check
from gitrepo import make_repo, run_git, write_files

from cockpit.factory import suite_identity
from cockpit.factory.gates import TESTS_CHANGED

WITH_HELPER = "def _op(a, b):\n    return a + b\n\n\ndef total(a, b):\n    return _op(a, b)\n"
CORRECT_TOTAL = "def total(a, b):\n    return a + b\n"
BROKEN_HELPER = WITH_HELPER.replace("a + b", "a - b")


def importing_total(module: str) -> str:
    return (f"from {module} import total\n\n\ndef test_add():\n    assert total(2, 3) == 5\n\n\n"
            "def test_add_negative():\n    assert total(-2, 1) == -1\n")


_n = iter(range(1000))


@pytest.fixture(scope="module")
def product():
    """A product whose add() calls a helper: tests/test_calc.py (two tests of add) as in gate_kit.BASE."""
    d = Path(tempfile.mkdtemp(prefix="cockpit-rename-", dir="/var/tmp"))
    yield make_repo(d / "p", {**BASE, "calc.py": WITH_HELPER.replace("total", "add")})
    shutil.rmtree(d, ignore_errors=True)


def change(repo: Path, files: dict[str, str], moves: dict[str, str] | None = None) -> str:
    name = f"r{next(_n)}"
    run_git(repo, "checkout", "-q", "-b", name, "main")
    for a, b in (moves or {}).items():
        run_git(repo, "mv", a, b)
    write_files(repo, files)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", name)
    sha = run_git(repo, "rev-parse", "HEAD")
    run_git(repo, "checkout", "-q", "main")
    return sha


def any_rename(monkeypatch):
    """The in-place check off: any name that is gone counts as renamed (to the names that appeared)."""
    async def yes(repo, base, commit, old_names, new_names, renamed_files):
        return dict(zip(sorted(old_names), sorted(new_names), strict=False))
    monkeypatch.setattr(suite_identity, "_same_code_renamed", yes)


async def test_a_correct_copy_in_another_module(gate, product, monkeypatch):
    sha = change(product, {"calc.py": "def plus(a, b):\n    return a - b\n", "reference.py": CORRECT_TOTAL,
                           "tests/test_calc.py": importing_total("reference")})
    res = await check(gate, product, sha)
    assert res.action == "block" and res.reasons == [TESTS_CHANGED], res.text
    assert "tests/test_calc.py::test_add, body rewritten" in res.text
    with monkeypatch.context() as m:
        any_rename(m)
        kept = await check(gate, product, sha)  # the main copy alone still holds it
        assert kept.action == "back" and "test_calc__cockpit_main.py" in kept.text, kept.text
        off = await check(gate, product, sha, off=["main_copies"])
    assert off.action == "pass", f"liveness: with both defences off the copy is tested:\n{off.text}"


@pytest.mark.parametrize("moved", [False, True], ids=["same module", "module renamed"])
async def test_renamed_in_place_but_the_test_imports_another_total(gate, product, moved):
    where = "arith.py" if moved else "calc.py"
    sha = change(product, {where: BROKEN_HELPER, "reference.py": CORRECT_TOTAL,
                           "tests/test_calc.py": importing_total("reference")},
                 moves={"calc.py": "arith.py"} if moved else None)
    res = await check(gate, product, sha)
    assert res.action == "back", f"main's copy, renamed, tests the broken total:\n{res.text}"
    module = "arith" if moved else "calc"
    assert f"test_calc__cockpit_main.py (renamed: add -> total{', calc -> arith' if moved else ''})" in res.text
    assert "FAILED tests/test_calc__cockpit_main.py::test_add - assert -1 == 5" in res.text, res.text
    off = await check(gate, product, sha, off=["main_copies"])
    assert off.action == "pass", f"liveness: without the main copy the test of reference.total is all that runs:\n" \
                                 f"{off.text}"
    honest = change(product, {where: WITH_HELPER, "tests/test_calc.py": importing_total(module)},
                    moves={"calc.py": "arith.py"} if moved else None)
    ok = await check(gate, product, honest)
    assert ok.action == "pass", ok.text
    assert any("renamed along with the code they test" in str(v.get("detail")) for v in ok.verdicts), ok.verdicts
    assert "renamed: add -> total" in str(ok.verdicts), ok.verdicts
