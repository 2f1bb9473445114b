"""kill -9 the headless factory at random moments: nothing committed is lost, nothing is left inconsistent.

The short run of bench/crash.py (5 kills; `make bench` runs 20). The cockpit is a real
subprocess on the demo factory; every check is on the real store file and git repos.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.crash import run  # noqa: E402


def test_five_kills_lose_nothing(tmp_path):
    seed = random.randrange(1 << 30)
    lines: list[str] = []
    counts = run(5, seed=seed, base=tmp_path, say=lines.append, tasks=3)
    assert counts.kills == 5, (seed, lines)
    assert counts.events_checked > 0 and counts.ledger_rows_checked > 0 and counts.tasks_checked > 0
    assert counts.runs_finished >= 1 and counts.worktrees_checked >= 3, (seed, lines)
