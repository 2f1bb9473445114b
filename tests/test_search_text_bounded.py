"""search_text cannot freeze the cockpit: an agent's regex matches in linear time, a search is bounded (A-08).

Python's re backtracks exponentially on patterns such as `(a+)+$` and holds the GIL while it does, so
a search in a worker thread still stops the event loop: every agent's stream and the screen freeze.
Each attack runs the production tool on a real tree while a ticker on the event loop measures its
longest gap; liveness: with Python's re in place of RE2 the loop stalls for seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from loop_kit import longest_gap_while

from cockpit.agents import tools as tools_mod
from cockpit.agents.tools import WorktreeTools
from cockpit.host.sandbox import Sandbox

STALL_S = 0.5  # the loop is called frozen past this gap (the liveness stalls here are 2-4 s)


async def _search_with_ticker(box: WorktreeTools, pattern: str) -> tuple[str, float]:
    return await longest_gap_while(box.call("search_text", {"pattern": pattern, "regex": True}))


@pytest.fixture
def box(tmp_path: Path) -> WorktreeTools:
    (tmp_path / "data.txt").write_text("a" * 27 + "!\n" + "x" * 30 + "\nplain line\n")
    return WorktreeTools(tmp_path, Sandbox("bwrap"))


# (pattern, a line that makes Python's re take ~1-4 s on it)
CATASTROPHIC = {"nested": (r"(a+)+$", "a" * 25 + "!"), "alternation": (r"(a|aa)+$", "a" * 33 + "!"),
                "star_star": (r"(x*)*y", "x" * 24)}


@pytest.mark.parametrize("name", sorted(CATASTROPHIC))
async def test_a_catastrophic_pattern_never_stalls_the_loop(tmp_path, monkeypatch, name):
    pattern, line = CATASTROPHIC[name]
    (tmp_path / "data.txt").write_text(line + "\n")
    box = WorktreeTools(tmp_path, Sandbox("bwrap"))
    with monkeypatch.context() as m:
        m.setattr(tools_mod, "_linear_regex", lambda p: re.compile(p).search)
        _, live_gap = await _search_with_ticker(box, pattern)
    assert live_gap > STALL_S, f"liveness: Python's re should freeze the loop on {pattern!r} (gap {live_gap:.2f} s)"
    out, gap = await _search_with_ticker(box, pattern)
    assert gap < STALL_S, f"the loop stalled {gap:.2f} s"
    assert out in ("no matches",) or out.startswith("data.txt:"), out


async def test_a_backreference_gets_a_clear_error(box):
    with pytest.raises(tools_mod.ToolError, match=r"not accepted: .*no backreferences"):
        await box.call("search_text", {"pattern": r"(a)\1", "regex": True})
    with pytest.raises(tools_mod.ToolError, match=r"not accepted: .*lookaround"):
        await box.call("search_text", {"pattern": r"(?<=a)b", "regex": True})


async def test_ordinary_regexes_still_find_lines(box):
    out = await box.call("search_text", {"pattern": r"^plain\s+\w+$", "regex": True})
    assert out == "data.txt:3: plain line"
    assert await box.call("search_text", {"pattern": "(?i)PLAIN", "regex": True}) == "data.txt:3: plain line"


async def test_a_search_over_a_huge_tree_stops_and_says_where(tmp_path, monkeypatch):
    for i in range(30):
        (tmp_path / f"f{i:02}.txt").write_text("line\n" * 20_000)
    box = WorktreeTools(tmp_path, Sandbox("bwrap"))
    monkeypatch.setattr(WorktreeTools, "SEARCH_TIME_S", 0.05)
    out = await box.call("search_text", {"pattern": "never there"})
    assert "(stopped after 0.05 s of reading, at f" in out and out.endswith("narrow the path)"), out
