"""A change to .gitattributes waits for the human (adversary C-07, C-08).

`working-tree-encoding=UTF-16LE` made the commit store code as CJK text: the reviewer's diff showed
gibberish while every checkout (the gate's, the user's) got the real backdoor back. `-diff` made every
later review show "Binary files differ" for the product's code. Both need a .gitattributes line; any
change to one (at any depth) is now a protected-file change. Liveness: with the protected paths switched
off, each passes the gate.
"""

from __future__ import annotations

import pytest
from gate_kit import branch, check, gate, repo  # noqa: F401  (fixtures)

from cockpit.factory.guards import PROTECTED_CHANGED

VARIANTS = {
    "encoding": {".gitattributes": "*.txt working-tree-encoding=UTF-16LE\n", "notes.txt": "hello\n"},
    "hide_diffs": {".gitattributes": "*.py -diff\n"},
    "nested": {"tests/.gitattributes": "*.py -diff\n"},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
async def test_a_gitattributes_change_waits_for_the_human(repo, gate, name):  # noqa: F811
    sha = branch(repo, VARIANTS[name])
    landed = await check(gate, repo, sha, off=["protected"])
    assert landed.action == "pass", f"liveness: without the protection it passes:\n{landed.text}"
    r = await check(gate, repo, sha)
    assert r.action == "block" and PROTECTED_CHANGED in r.reasons and ".gitattributes" in r.text, r.text
