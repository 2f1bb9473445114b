"""Parsing what an agent committed never stops the cockpit (adversary C-04).

A builder commits a 1 MB generated `calc/table.py`. The tests stage scans every added Python file for
reach into the test runner; `ast.parse` is one C call holding the GIL, so on the event loop (or in a
thread) every agent and the screen stopped for seconds. Now a big file is parsed in a child process
(killed after a timeout, memory-capped); a file over the scan limit is not read and waits for the human.
A ticker on the event loop measures the longest gap; liveness: the same scan run the old way (in the
loop's process) stalls it for seconds.
"""

from __future__ import annotations

import pytest
from gitrepo import commit_files, make_repo, run_git
from loop_kit import longest_gap_while

from cockpit.factory import off_loop, runner_reach
from cockpit.factory.runner_reach import added_reach, reaches_reporter

STALL_S = 0.5
# 900 kB, under the scan limit: ~1 s of ast.parse on the 2-core box (the first version, 600 kB of `T = 1`, took
# 0.5-0.6 s: on a quick moment under the stall line, so the liveness side could not tell)
BIG = "x = a + b * c - d\n" * 50_000


@pytest.fixture
def repo(tmp_path):
    repo = make_repo(tmp_path / "repo", {"calc/__init__.py": "def add(a, b):\n    return a + b\n"})
    base = run_git(repo, "rev-parse", "HEAD")
    return repo, base


async def test_a_big_generated_file_is_scanned_without_stalling_the_loop(repo, monkeypatch):
    repo, base = repo
    sha = commit_files(repo, {"calc/table.py": BIG + "import atexit\natexit.register(print)\n"})
    found, gap = await longest_gap_while(added_reach(repo, base, sha, [("calc/table.py", None)]))
    assert gap < STALL_S, f"the loop stalled {gap:.2f} s"
    with monkeypatch.context() as m:
        m.setattr(off_loop, "THREAD_BYTES", 10**9)  # the way before: parsed in the loop's own process
        _, live_gap = await longest_gap_while(added_reach(repo, base, sha, [("calc/table.py", None)]))
    # relative to the defended run (under a loaded suite the in-process stall was once 0.44 s, not 1 s)
    assert live_gap > max(0.2, 3 * gap), f"liveness: parsing in-process should stall the loop (gap {live_gap:.2f} s, " \
                                         f"off the loop {gap:.2f} s)"
    assert [r.what for r in found] == ["registers an atexit handler"], found  # the scan still sees it


async def test_a_file_over_the_limit_is_not_read_and_waits_for_the_human(repo, monkeypatch):
    repo, base = repo
    sha = commit_files(repo, {"calc/table.py": "T = 1\n" * (runner_reach.MAX_SCAN_BYTES // 6 + 10)})
    (r,) = await added_reach(repo, base, sha, [("calc/table.py", None)])
    assert "is too large to be scanned" in r.what and reaches_reporter(r), r


async def test_a_parse_that_takes_too_long_is_a_finding(repo, monkeypatch):
    repo, base = repo
    sha = commit_files(repo, {"calc/table.py": BIG})
    monkeypatch.setattr(off_loop, "TIMEOUT_S", 0.01)
    (r,) = await added_reach(repo, base, sha, [("calc/table.py", None)])
    assert "is too large to be scanned" in r.what and "longer than 0.01 s" in r.what and reaches_reporter(r), r
