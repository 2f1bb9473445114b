"""The tests gate through the whole factory: the orchestrator's check stage only records what TestsGate decides.

Real factory (factory.toml, store, the scripted model over the real SDK, the bwrap sandbox): a builder whose
test file exits 0 from atexit over red tests blocks for the human with why; a harmless atexit handler is
named in the reviewer's brief (the reviewer script only approves when the brief names it, file:line).
"""

from __future__ import annotations

from pathlib import Path

from cockpit.config import load_factory
from cockpit.domain import TaskState
from cockpit.factory.commands import add_task
from cockpit.factory.evidence import CONTRADICTS
from cockpit.factory.runtime import open_factory
from factory_kit import write_factory
from gitrepo import make_repo, run_git

FILES = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    "pytest.ini": "[pytest]\npythonpath = .\n",
}

SCENARIOS = """
[[script]]
name = "builder: sneaky exit"
role = "builder"
match = ["Sneaky exit"]
[[script.turns]]
[[script.turns.tool_use]]
name = "write_file"
input = { path = "calc.py", content = "def add(a, b):\\n    return a - b\\n" }
[[script.turns]]
[[script.turns.tool_use]]
name = "write_file"
input = { path = "tests/test_zz.py", content = "import atexit, os\\natexit.register(lambda: os._exit(0))\\n" }
[[script.turns]]
[[script.turns.tool_use]]
name = "commit"
input = { message = "subtract" }
[[script.turns]]
[[script.turns.tool_use]]
name = "submit"
input = {}

[[script]]
name = "builder: log at exit"
role = "builder"
match = ["Log at exit"]
[[script.turns]]
[[script.turns.tool_use]]
name = "write_file"
input = { path = "tests/test_log.py", content = "import atexit\\natexit.register(print)\\n\\n\\ndef test_log():\\n    pass\\n" }
[[script.turns]]
[[script.turns.tool_use]]
name = "commit"
input = { message = "log" }
[[script.turns]]
[[script.turns.tool_use]]
name = "submit"
input = {}

[[script]]
name = "reviewer: shown the runner reach"
role = "reviewer"
match = ["Log at exit", "reaches into the test runner", "tests/test_log.py:2: registers an atexit handler"]
[[script.turns]]
[[script.turns.tool_use]]
name = "approve"
input = { commit = "{{sha}}", note = "the atexit handler only prints" }

[[script]]
name = "reviewer: not shown"
role = "reviewer"
[[script.turns]]
[[script.turns.tool_use]]
name = "request_changes"
input = { note = "the brief did not show the runner reach", comments = [] }

[[script]]
name = "breaker: nothing"
role = "breaker"
[[script.turns]]
text = "Nothing found."
"""


def factory(tmp_path: Path):
    make_repo(tmp_path / "f" / "products" / "calc", FILES)
    return load_factory(write_factory(tmp_path / "f", products=("calc",), scenarios=SCENARIOS))


async def test_exit_0_over_red_tests_blocks_and_a_named_atexit_reaches_the_reviewer(tmp_path):
    cfg = factory(tmp_path)
    async with open_factory(cfg) as f:
        sneaky = (await add_task(f.store, product="calc", title="Sneaky exit")).task_id
        logged = (await add_task(f.store, product="calc", title="Log at exit")).task_id
        await f.orchestrator.run(until_idle=True, timeout=180)
        a, b = f.store.task(sneaky), f.store.task(logged)
    assert a.state == TaskState.BLOCKED and a.blocked_by == ["tests", CONTRADICTS], (a.state, a.block_detail)
    assert "exit code 0 although 1 failed: tests/test_calc.py::test_add" in a.block_detail
    assert "tests/test_zz.py:2: registers an atexit handler" in a.block_detail  # the needs-you detail, file:line
    # checked after the other task was checked green: first on top of it (a merge train), then alone
    assert [(v.gate, v.outcome.value) for v in a.verdicts if v.gate != "train"] == [("tests", "fail")]
    assert all(v.outcome.value == "fail" and "on top of" in v.detail for v in a.verdicts if v.gate == "train")
    assert b.state == TaskState.DONE, (b.state, b.block_detail, b.feedback)
    assert run_git(cfg.product_path("calc"), "rev-parse", "main") == b.merged_commit
    # approved by the script that needs the flag in its brief (the other one requests changes)
    assert [a.note for a in b.approvals] == ["the atexit handler only prints"]
