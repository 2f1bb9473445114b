"""A test file may not put its own code in place of the product's for the whole session (adversary C-01).

The attack: the builder breaks `add` and adds one test file, collected before main's, that rebinds
`calc.add` at import to a correct reference implementation. Main's unchanged tests then test the
replacement: the run is green, identity holds, and the broken `add` lands. The reporter now looks, after
collection and after each test's teardown (once the test's own monkeypatches are undone), for a module of
the tree holding a function or class written in a test file; the gate blocks when that file is one the
change added or edited. Each variant lands with the defence switched off (liveness).
"""

from __future__ import annotations

import pytest
from gate_kit import BROKEN, branch, check, gate, repo  # noqa: F401  (fixtures)

from cockpit.factory.gates import PRODUCT_PATCHED

ATTACKS = {
    "rebind_at_import": {"tests/test_aaa_fixtures.py": (
        "import calc\n\n\ndef _reference_add(a, b):\n    return a + b\n\n\ncalc.add = _reference_add\n\n\n"
        "def test_reference_add():\n    assert calc.add(1, 1) == 2\n")},
    "lambda_via_setattr": {"tests/test_aaa_fixtures.py": (
        "import importlib\n\nsetattr(importlib.import_module('calc'), 'add', lambda a, b: a + b)\n\n\n"
        "def test_nothing():\n    assert True\n")},
    "conftest_rebinds": {"tests/conftest.py": (
        "import calc\n\n\ndef _fixed(a, b):\n    return a + b\n\n\ncalc.add = _fixed\n")},
    "module_dict_write": {"tests/test_aaa_fixtures.py": (
        "import sys\nimport calc  # noqa\n\n\ndef _fixed(a, b):\n    return a + b\n\n\n"
        "vars(sys.modules['calc'])['add'] = _fixed\n\n\ndef test_nothing():\n    assert True\n")},
}
# conftest.py is a protected file (its change blocks anyway): that guard is off to show this one alone
ALSO_OFF = {"conftest_rebinds": ["protected"]}


@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_product_code_replaced_by_a_test_file_blocks(repo, gate, name):  # noqa: F811
    sha = branch(repo, {**BROKEN, **ATTACKS[name]})
    # product_replaced (a plain def that holds something else) sees these too: both off for the liveness side
    landed = await check(gate, repo, sha, off=["product_patch", "product_replaced", "product_values",
                                               *ALSO_OFF.get(name, [])])
    assert landed.action == "pass", f"liveness: main's tests test the replacement and pass:\n{landed.text}"
    alone = await check(gate, repo, sha, off=["product_patch", "product_values", *ALSO_OFF.get(name, [])])
    assert alone.action == "block" and PRODUCT_PATCHED in alone.reasons, alone.text  # the second check alone
    r = await check(gate, repo, sha, off=ALSO_OFF.get(name, []))
    assert r.action == "block" and PRODUCT_PATCHED in r.reasons, r.text
    assert "calc.add replaced by code written in tests/" in r.text, r.text


async def test_a_patch_inside_a_test_is_fine(repo, gate):  # noqa: F811
    """monkeypatch undoes itself at teardown: nothing is left replaced, and a correct change passes."""
    sha = branch(repo, {"tests/test_patching.py": (
        "import calc\n\n\ndef test_with_a_stub(monkeypatch):\n    monkeypatch.setattr(calc, 'add', lambda a, b: 0)\n"
        "    assert calc.add(1, 2) == 0\n")})
    r = await check(gate, repo, sha)
    assert r.action == "pass", r.text
