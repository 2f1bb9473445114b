"""An agent's log is complete (issue 20, point 4): in a headless run, to its end, with what its commands printed.

Real parts: `cockpit init`, `product add` and `run --headless` through the real command line on a real
git repo, the scripted model behind the real SDK, the sandbox, the store on a SQLite file; the log
writer on a real store for the catch-up case.
"""

from __future__ import annotations

import asyncio

import pytest

from cockpit.cli import main as cli
from cockpit.domain import Event, Kind
from cockpit.factory.agent_log import OUTPUT_PREFIX, AgentLogWriter, log_path
from cockpit.store import Store
from gitrepo import make_repo

SCENARIO = """
[[script]]
name = "builder: prints, then stops without submitting"
role = "builder"
match = ["Count to five"]
[[script.turns]]
text = "Let me count."
[[script.turns.tool_use]]
name = "run_command"
input = { command = "python3 -c \\"print('\\\\n'.join('line %d of the count' % i for i in range(1, 6)))\\"" }
[[script.turns]]
text = "Counted; I stop here."
"""


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("COCKPIT_FACTORY", raising=False)


def own_factory(tmp_path, capsys) -> str:
    home = tmp_path / "fac"
    assert cli(["init", str(home)]) == 0
    make_repo(tmp_path / "calc")
    factory = str(home / "factory.toml")
    assert cli(["product", "add", str(tmp_path / "calc"), "--yes", "--no-run", "--factory", factory]) == 0
    (home / "scenarios" / "count.toml").write_text(SCENARIO)
    capsys.readouterr()
    return factory


@pytest.mark.timeout(120)
def test_a_headless_run_logs_every_event_of_the_agent_with_its_commands_output(tmp_path, capsys, offline):
    factory = own_factory(tmp_path, capsys)
    assert cli(["task", "add", "calc", "Count to five", "--factory", factory]) == 0
    assert cli(["task", "add", "calc", "Something no script knows", "--factory", factory]) == 0
    capsys.readouterr()
    cli(["run", "--headless", "--factory", factory])
    capsys.readouterr()

    assert cli(["tail", "builder-1", "-n", "100", "--factory", factory]) == 0
    log = capsys.readouterr().out
    assert "▶ started as builder on T1" in log
    assert "▸ run_command python3 -c" in log
    # what the command printed, as the model got it, marked as output
    for i in range(1, 6):
        assert f"{OUTPUT_PREFIX}line {i} of the count" in log, log
    assert "│ Counted; I stop here." in log
    assert "■ finished on T1 (ended)" in log
    assert "⚠ T1 blocked: builder" in log  # the end: why its task stopped, in its builder's log
    # the agent that blocked at its first call: its whole (short) session, not just "started"
    assert cli(["tail", "builder-2", "-n", "100", "--factory", factory]) == 0
    short = capsys.readouterr().out
    assert "→ T2 started by builder-2" in short
    assert "▶ started as builder on T2" in short and "■ finished on T2" in short
    assert "⚠ T2 blocked" in short


async def _events(store: Store, n: int, agent: str = "builder-7") -> None:
    await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": "x"}))
    for i in range(n):
        store.post(Event(kind=Kind.AGENT_TOOL_RESULT, actor=agent, product="shop", task_id="T1",
                         data={"agent": agent, "name": "run_command", "is_error": False,
                               "summary": f"result {i}", "output": f"printed {i}\n"}))


async def test_a_stop_right_after_the_last_event_keeps_it_and_a_later_writer_catches_up(tmp_path):
    """The attack: events posted just before the factory stops. A writer cancelled like before (no catch-up)
    loses them (the attack lands); `stop()` keeps them; a later writer catches up from the cursor."""
    logs = tmp_path / "logs"
    store = await Store.open(tmp_path / "cockpit.db")
    try:
        # without the defence: the writer is cancelled the way the old stop did, before it wrote the burst
        bare = AgentLogWriter.start(store, logs)
        await asyncio.sleep(0)
        await _events(store, 30)
        bare._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bare._task
        path = log_path(logs, "builder-7")
        lost = path.read_text() if path.exists() else ""
        assert "result 29" not in lost, "the attack did nothing: the burst was written without the catch-up"
        # a later run: a new writer's stop, even at once, catches up from the cursor
        later = AgentLogWriter.start(store, logs)
        await later.stop()
        text = path.read_text()
        assert all(f"result {i}" in text and f"{OUTPUT_PREFIX}printed {i}" in text for i in range(30))
        assert text.count("result 0") == 1, "nothing is written twice"
        # with the defence: a burst right before stop() reaches the log
        writer = AgentLogWriter.start(store, logs)
        await asyncio.sleep(0)
        await _events(store, 30, agent="builder-8")
        await writer.stop()
        text8 = log_path(logs, "builder-8").read_text()
        assert all(f"result {i}" in text8 for i in range(30))
    finally:
        await store.close()
