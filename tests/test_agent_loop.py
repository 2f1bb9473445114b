"""The agent loop on the real SDK against the scripted model: streaming, tools, refusals, spend."""

from pathlib import Path

import anthropic
import pytest

from cockpit.agents.loop import AgentSession
from cockpit.agents.roles import system_prompt
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
from cockpit.agents.tools import WorktreeTools
from cockpit.domain import Event, Kind, TaskState
from cockpit.domain.prices import Usage, default_prices
from cockpit.host.sandbox import Sandbox
from cockpit.factory.task_tools import TaskToolbox
from cockpit.factory.workspaces import Workspaces
from cockpit.store import Store
from gitrepo import make_repo

SCENARIOS = Path(__file__).parent / "scenarios" / "misbehaving_builder.toml"


@pytest.fixture
def server():
    with ScriptedModelServer(ScriptedModel.from_paths([SCENARIOS])) as s:
        yield s


async def test_builder_cannot_approve_its_own_work_and_the_refusal_is_recorded(tmp_path, server):
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    store = await Store.open(tmp_path / "cockpit.db")
    ws = Workspaces(tmp_path / "worktrees")
    created = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="p",
                                       data={"title": "Misbehave"}))
    tid = created.task_id
    await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="p", task_id=tid,
                             data={"agent": "builder-1"}))
    wt = await ws.ensure("p", repo, "main", tid)
    client = anthropic.AsyncAnthropic(api_key="test", base_url=server.base_url, max_retries=0)
    toolbox = TaskToolbox(role="builder", agent="builder-1", task_id=tid, product="p", worktree=wt,
                          worktree_tools=WorktreeTools(wt, Sandbox("bwrap")), store=store, workspaces=ws)
    assert "approve" not in toolbox.names() and "approve" not in {s["name"] for s in toolbox.specs()}
    prices = default_prices()
    session = AgentSession(agent="builder-1", role="builder", product="p", task_id=tid, client=client,
                           model="claude-sonnet-4-6", max_tokens=1024,
                           system=system_prompt(role="builder", agent="builder-1", product="p"),
                           toolbox=toolbox, store=store, prices=prices, max_turns=10)
    result = await session.run(f"Task {tid}: Misbehave")
    await store.flush()
    assert result.reason == "ended" and result.turns == 4
    task = store.task(tid)
    assert task.state == TaskState.BUILDING and task.approvals == [] and task.authors == ["builder-1"]

    refused = await store.events(kinds=[Kind.REFUSED])
    assert [(e.actor, e.data["kind"]) for e in refused] == [("builder-1", "tool:approve")]
    assert refused[0].data["reason"] == "tool 'approve' is not available to builder builder-1"
    # the model saw the refusal as an error tool_result
    last_request = server.requests[-1]
    results = [b for m in last_request["messages"] if m["role"] == "user" and isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert results[-1]["is_error"] is True

    # text streamed as events, in coalesced chunks
    texts = [e.data["text"] for e in await store.events(kinds=[Kind.AGENT_TEXT])]
    assert "".join(texts).startswith("Writing the change.\nThen I will approve it myself.")
    assert len(texts) < 20

    # every call reserved before and settled after; spend equals usage x price, recomputed here
    rows = await store.query("SELECT state, reserved_usd, settled_usd, input_tokens, output_tokens FROM ledger")
    assert len(rows) == 4 and all(r[0] == "settled" and r[1] >= r[2] > 0 for r in rows)
    calls = await store.events(kinds=[Kind.MODEL_CALL])
    recomputed = sum(prices.cost("claude-sonnet-4-6", Usage(**e.data["usage"])) for e in calls)
    assert task.spend_usd == pytest.approx(recomputed, abs=1e-9)
    # the prompt grows every turn (most of it read from the prompt cache, so count all of the input)
    totals = [Usage(**e.data["usage"]).total_input for e in calls]
    assert totals == sorted(totals)
    await client.close()
    await store.close()
