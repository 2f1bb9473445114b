"""A test of main follows a rename only when the code it tests was renamed in place (suite_identity).

The attack (adversary session B-09): `add` becomes a broken `plus` (what the product's callers use), a fresh
correct `total` appears in another module, and main's tests are changed to call `total`. The body differs only in
names and `add` is gone from the tree, so the old check took it for a rename: noted, not blocked, and main's copy
of the test file did not run either. Now the new name must be defined where the old one was, with the same code
but for the names. Liveness: with that check answering yes, the attack lands. Variants: the copy in the same file
beside the broken original, a copy whose code differs. A real rename in place is still followed.
"""

from __future__ import annotations

import pytest
from gate_kit import branch, check

from cockpit.factory import suite_identity
from cockpit.factory.gates import TESTS_CHANGED

RETARGETED = ("from reference import total\n\n\ndef test_add():\n    assert total(2, 3) == 5\n\n\n"
              "def test_add_negative():\n    assert total(-2, 1) == -1\n")
IN_PLACE = ("from calc import total\n\n\ndef test_add():\n    assert total(2, 3) == 5\n\n\n"
            "def test_add_negative():\n    assert total(-2, 1) == -1\n")
ATTACKS = {
    "a correct copy in another module": {"calc.py": "def plus(a, b):\n    return a - b\n",
                                         "reference.py": "def total(a, b):\n    return a + b\n",
                                         "tests/test_calc.py": RETARGETED},
    "a copy beside the broken original, other code": {
        "calc.py": "def plus(a, b):\n    return a - b\n\n\ndef total(a, b):\n    return b + a\n",
        "tests/test_calc.py": IN_PLACE},
}


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_a_test_retargeted_at_another_function_is_not_a_rename(repo, gate, name, monkeypatch):
    sha = branch(repo, ATTACKS[name])
    res = await check(gate, repo, sha)  # (first: a green run would be reused for the same inputs)
    assert res.action == "block" and res.reasons == [TESTS_CHANGED], res.text
    assert "tests/test_calc.py::test_add, body rewritten" in res.text

    async def yes(repo, base, commit, old_names, new_names, renamed_files):
        return dict(zip(sorted(old_names), sorted(new_names), strict=False))
    with monkeypatch.context() as m:  # the defences off: any name that is gone counts as renamed, no main copy
        m.setattr(suite_identity, "_same_code_renamed", yes)
        off = await check(gate, repo, sha, off=["main_copies"])
    assert off.action == "pass", f"liveness: the retargeted tests should pass as a rename:\n{off.text}"


async def test_a_rename_in_place_is_still_followed(repo, gate):
    sha = branch(repo, {"calc.py": "def total(a, b):\n    return a + b\n", "tests/test_calc.py": IN_PLACE})
    res = await check(gate, repo, sha)
    assert res.action == "pass", res.text
    assert any("renamed along with the code they test" in str(v.get("detail")) for v in res.verdicts), res.verdicts
