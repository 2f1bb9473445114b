"""The model fails the way the real API does; the agent loop retries, settles, and blocks without losing anything.

Real SDK, real HTTP on 127.0.0.1 (the scripted server with a FaultInjector), real store,
real git worktree, real orchestrator. HTTP-level failures are the SDK's to retry
(max_retries, set here deliberately); a stream that breaks midway is ours.
"""

from __future__ import annotations

import anthropic
import pytest
from factory_kit import write_factory
from gitrepo import make_repo

from cockpit.agents.client import ModelClient
from cockpit.agents.faults import Fault, FaultInjector, FaultKind
from cockpit.agents.loop import AgentSession, ModelUnavailable
from cockpit.agents.roles import system_prompt
from cockpit.agents.scenarios import Script
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
from cockpit.agents.tools import WorktreeTools
from cockpit.config import load_factory
from cockpit.domain import Event, Kind, TaskState
from cockpit.domain.prices import default_prices
from cockpit.factory import commands
from cockpit.factory.orchestrator import Orchestrator
from cockpit.host.sandbox import Sandbox
from cockpit.factory.task_tools import TaskToolbox
from cockpit.factory.workspaces import Workspaces
from cockpit.store import Store

SDK_RETRIES = 2  # the SDK's own retries for HTTP errors: 3 attempts in all
HTTP_FAULTS = [FaultKind.RATE_LIMIT, FaultKind.OVERLOADED, FaultKind.SERVER_ERROR, FaultKind.RESET]
STREAM_FAULTS = [FaultKind.STALL, FaultKind.TRUNCATE, FaultKind.EARLY_END, FaultKind.STREAM_ERROR,
                 FaultKind.BAD_TOOL_JSON]

SCRIPT = Script.model_validate({
    "name": "builder: notes", "role": "builder", "match": ["Write notes"],
    "turns": [
        {"text": "I will write the notes file now.",
         "tool_use": [{"name": "write_file", "input": {"path": "NOTES.md", "content": "hello\n"}}]},
        {"tool_use": [{"name": "commit", "input": {"message": "Add notes"}}]},
        {"tool_use": [{"name": "submit", "input": {"note": "notes"}}]},
    ],
})


@pytest.fixture
def server():
    with ScriptedModelServer(ScriptedModel([SCRIPT])) as s:
        s.faults = FaultInjector()
        yield s


@pytest.fixture
async def env(tmp_path, server):
    """A builder session on a started task, over the faulty server."""
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    store = await Store.open(tmp_path / "cockpit.db")
    ws = Workspaces(tmp_path / "worktrees")
    created = await commands.add_task(store, product="p", title="Write notes")
    tid = created.task_id
    await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="p", task_id=tid,
                             data={"agent": "builder-1"}))
    wt = await ws.ensure("p", repo, "main", tid)
    # timeout: a stalled stream is given up on after 1 s of silence
    client = anthropic.AsyncAnthropic(api_key="test", base_url=server.base_url, max_retries=SDK_RETRIES, timeout=1.0)
    toolbox = TaskToolbox(role="builder", agent="builder-1", task_id=tid, product="p", worktree=wt,
                          worktree_tools=WorktreeTools(wt, Sandbox("bwrap")), store=store, workspaces=ws)
    session = AgentSession(agent="builder-1", role="builder", product="p", task_id=tid, client=client,
                           model="claude-sonnet-4-6", max_tokens=1024,
                           system=system_prompt(role="builder", agent="builder-1", product="p"),
                           toolbox=toolbox, store=store, prices=default_prices(), max_turns=10,
                           stream_retries=2, retry_delay_s=0.01)
    yield session, store, tid
    await client.close()
    await store.close()


async def ledger(store: Store) -> list[tuple]:
    return await store.query("SELECT state, reserved_usd, settled_usd, input_tokens FROM ledger ORDER BY ts")


async def balanced(store: Store, tid: str) -> None:
    """Every reservation settled (fully or not), and the task's spend is exactly the ledger's."""
    rows = await ledger(store)
    assert rows and all(r[0] in ("settled", "unsettled") for r in rows)
    assert store.task(tid).spend_usd == pytest.approx(sum(r[2] for r in rows), abs=1e-9)
    settled = await store.events(kinds=[Kind.SPEND])
    assert len(settled) == len(rows)


@pytest.mark.parametrize("kind", HTTP_FAULTS)
async def test_http_faults_are_retried_by_the_sdk(env, server, kind):
    session, store, tid = env
    server.faults.push(kind, kind)  # the first call fails twice, then answers
    result = await session.run("Task: Write notes")
    await store.flush()
    assert result.reason == "terminal" and result.terminal_tool == "submit"
    assert store.task(tid).state == TaskState.CHECKING
    assert server.faults.applied == {kind.value: 2}
    assert len(server.requests) == 3 + 2  # 3 attempts of turn 1, then turns 2 and 3
    rows = await ledger(store)
    assert [r[0] for r in rows] == ["settled"] * 3  # one reservation per call, whatever the SDK retried
    await balanced(store, tid)


@pytest.mark.parametrize("kind", HTTP_FAULTS)
async def test_http_faults_past_the_sdk_retries_are_model_unavailable(env, server, kind):
    session, store, tid = env
    server.faults.push(*[kind] * (SDK_RETRIES + 1))
    with pytest.raises(ModelUnavailable):
        await session.run("Task: Write notes")
    await store.flush()
    assert len(server.requests) == SDK_RETRIES + 1
    assert [r[0] for r in await ledger(store)] == ["unsettled"]  # nothing was answered: it costs nothing
    assert (await ledger(store))[0][2] == 0
    await balanced(store, tid)
    assert [e.kind for e in await store.events(kinds=[Kind.AGENT_STARTED])] == [Kind.AGENT_STARTED]


@pytest.mark.parametrize("kind", STREAM_FAULTS)
async def test_a_stream_that_breaks_is_retried_by_us_and_its_part_is_paid(env, server, kind):
    session, store, tid = env
    server.faults.push(Fault(kind, stall_s=20))
    result = await session.run("Task: Write notes")
    await store.flush()
    assert result.reason == "terminal" and store.task(tid).state == TaskState.CHECKING
    assert server.faults.applied == {kind.value: 1}
    rows = await ledger(store)
    assert [r[0] for r in rows] == ["unsettled", "settled", "settled", "settled"]
    # the broken attempt is paid from the usage message_start carried: its input tokens
    assert rows[0][3] > 0 and rows[0][2] > 0
    await balanced(store, tid)
    retries = await store.events(kinds=["model.retry"])
    assert [(e.actor, e.data["attempt"]) for e in retries] == [("builder-1", 1)]
    # nothing was run from the broken answer: the write happened once
    tools = [e.data["name"] for e in await store.events(kinds=[Kind.AGENT_TOOL])]
    assert tools == ["write_file", "commit", "submit"]


@pytest.mark.parametrize("kind", STREAM_FAULTS)
async def test_a_stream_that_keeps_breaking_is_model_unavailable_and_nothing_is_lost(env, server, kind):
    session, store, tid = env
    server.faults.push(*[Fault(kind, stall_s=20)] * 3)
    with pytest.raises(ModelUnavailable, match="the response stream broke 3 times"):
        await session.run("Task: Write notes")
    await store.flush()
    rows = await ledger(store)
    assert [r[0] for r in rows] == ["unsettled"] * 3
    await balanced(store, tid)
    assert len(await store.events(kinds=["model.retry"])) == 2
    if kind in (FaultKind.STALL, FaultKind.TRUNCATE, FaultKind.EARLY_END, FaultKind.STREAM_ERROR):
        # the text streamed before each break stays in the transcript
        texts = "".join(e.data["text"] for e in await store.events(kinds=[Kind.AGENT_TEXT]))
        assert texts.startswith("I will")
    assert await store.events(kinds=[Kind.AGENT_TOOL]) == []


@pytest.mark.parametrize("kind", [FaultKind.OVERLOADED, FaultKind.TRUNCATE])
async def test_orchestrator_blocks_model_unavailable_and_a_human_retry_resumes(tmp_path, server, kind):
    cfg = load_factory(write_factory(tmp_path / "f", scenario_files=("notes_builder.toml",)))
    store = await Store.open(cfg.store_path)
    client = anthropic.AsyncAnthropic(api_key="test", base_url=server.base_url, max_retries=1, timeout=2.0)
    orch = Orchestrator(cfg, store, ModelClient(client, "scripted"))
    task = (await commands.add_task(store, product="shop", title="Write notes")).task_id
    # turn 1 answers (None: no fault); turn 2 fails past every retry (the SDK's 2 attempts, or our 3 streams)
    n = 2 if kind == FaultKind.OVERLOADED else 3
    server.faults.push(None, *[kind] * n)
    await orch.run(until_idle=True, timeout=60)
    await store.flush()
    t = store.task(task)
    assert t.state == TaskState.BLOCKED and t.blocked_by == ["model unavailable"], t
    assert len(server.requests) == 1 + n
    wt = cfg.worktrees_path / "shop" / task
    assert (wt / "NOTES.md").read_text() == "hello\n"  # the work before the failure stays
    # the human retries: the builder resumes, with the worktree and transcript as they were
    await commands.retry(store, task, actor="human:you")
    await orch.run(until_idle=True, timeout=60)
    await store.flush()
    t = store.task(task)
    assert t.commit is not None and t.blocked_by != ["model unavailable"], t  # (no reviewer script: it may block later)
    events = await store.events(task_id=task)
    kinds = [e.kind for e in events]
    assert kinds.index(Kind.BLOCKED) < kinds.index(Kind.RETRY) < kinds.index(Kind.COMMITTED) < kinds.index(Kind.SUBMITTED)
    assert sum(1 for e in events if e.kind == Kind.AGENT_STARTED and e.data["role"] == "builder") == 2
    rows = await store.query("SELECT state FROM ledger WHERE task_id = ?", (task,))
    assert rows and all(r[0] in ("settled", "unsettled") for r in rows)
    await client.close()
    await store.close()


def test_fault_queue_is_consumed_in_order():
    inj = FaultInjector()
    inj.push(FaultKind.RESET, None, Fault(FaultKind.RATE_LIMIT, retry_after_s=2), "stall")
    assert inj.pending == 4
    taken = [inj._take({}) for _ in range(4)]
    assert [f and f.kind for f in taken] == [FaultKind.RESET, None, FaultKind.RATE_LIMIT, FaultKind.STALL]
    assert inj._take({"x-api-key": "k"}) is None and inj.api_keys_seen == {"k"} and inj.requests_seen == 5
    assert inj.applied == {"reset": 1, "rate_limit": 1, "stall": 1}
