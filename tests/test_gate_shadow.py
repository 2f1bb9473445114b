"""A module added where pytest imports it first may not stand in for the product's or the standard library's.

The attack (adversary session B-04): `calc` broken, and `tests/calc.py` added, a correct copy. pytest's default
import mode puts `tests/` (test files, no __init__.py) first on sys.path, so main's unchanged tests import the
copy: the run is honest and green, and broken `calc` lands. The guard (git only, before anything runs) now blocks
such a module for the human, naming it. Liveness: with that check off (`shadows`), the attack passes the gate.
Variants: a package `tests/calc/__init__.py`, a product under src/ shadowed from the root, a standard-library
name (`tests/json.py`). Helpers with names of their own still pass.
"""

from __future__ import annotations

import pytest
from gate_kit import BROKEN, branch, check

from cockpit.factory.guards import SHADOWS

COPY = "def add(a, b):\n    return a + b\n"
ATTACKS = {
    "tests/calc.py": {**BROKEN, "tests/calc.py": COPY},
    "tests/calc/__init__.py": {**BROKEN, "tests/calc/__init__.py": COPY},
}


@pytest.mark.parametrize("path", list(ATTACKS))
async def test_a_copy_of_the_product_beside_the_tests(repo, gate, path):
    sha = branch(repo, ATTACKS[path])
    res = await check(gate, repo, sha)
    assert res.action == "block" and res.reasons == [SHADOWS], res.text
    assert f"{path} shadows the product's module calc (calc.py)" in res.text
    off = await check(gate, repo, sha, off=["shadows"])
    assert off.action == "pass", f"liveness: without the guard the copy is tested, not calc:\n{off.text}"


async def test_a_standard_library_name_and_an_ordinary_helper(repo, gate):
    res = await check(gate, repo, branch(repo, {"tests/json.py": "dumps = None\n"}))
    assert res.action == "block" and "tests/json.py shadows the standard library's module json" in res.text
    ok = await check(gate, repo, branch(repo, {"tests/helpers_for_calc.py": "X = 1\n"}))
    assert ok.action == "pass", ok.text
