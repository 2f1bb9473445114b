"""The model unreachable is one notice per outage: not one per failed call, not one per blocked task.

Real SDK, real HTTP on 127.0.0.1 (the scripted server answering 500 or resetting the connection on
command), real orchestrator, real store files, a store restart in the middle of an outage.
"""

from __future__ import annotations

import anthropic
import pytest
from factory_kit import write_factory

from cockpit.agents.client import ModelClient
from cockpit.agents.faults import FaultInjector, FaultKind
from cockpit.agents.scenarios import Script
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
from cockpit.config import load_factory
from cockpit.domain import Event, Kind, TaskState
from cockpit.factory import commands
from cockpit.factory.orchestrator import Orchestrator
from cockpit.store import Store

SAY = Script.model_validate({"name": "builder: says", "role": "builder", "match": ["Say"],
                             "turns": [{"text": "I have nothing to change."}]})
SDK_ATTEMPTS = 2  # max_retries=1: each model call is tried twice by the SDK before ModelUnavailable


@pytest.fixture
def server():
    with ScriptedModelServer(ScriptedModel([SAY])) as s:
        s.faults = FaultInjector()
        yield s


async def model_rows(store: Store) -> list[tuple]:
    return await store.query("SELECT key, body FROM outbox WHERE key LIKE 'model:%' ORDER BY id")


async def run(cfg, store, server) -> None:
    client = anthropic.AsyncAnthropic(api_key="test", base_url=server.base_url, max_retries=1, timeout=5.0)
    try:
        await Orchestrator(cfg, store, ModelClient(client, "scripted")).run(until_idle=True, timeout=60)
        await store.flush()
    finally:
        await client.close()


async def test_an_outage_is_one_notice_across_tasks_calls_and_a_restart_and_the_next_outage_another(tmp_path, server):
    cfg = load_factory(write_factory(tmp_path / "f"))
    store = await Store.open(cfg.store_path)
    tasks = [(await commands.add_task(store, product="shop", title=f"Say {i}")).task_id for i in range(3)]
    server.faults.push(*[FaultKind.SERVER_ERROR] * (SDK_ATTEMPTS * 3))  # every call of the three fails: 500
    await run(cfg, store, server)
    assert all(store.task(t).blocked_by == ["model unavailable"] for t in tasks)
    failures = await store.events(kinds=[Kind.MODEL_UNAVAILABLE])
    # liveness: three failures were recorded, each one a notice if it were keyed per call
    assert len(failures) == 3 and len({e.data["outage"] for e in failures}) == 1
    rows = await model_rows(store)
    assert [k for k, _ in rows] == [f"model:unreachable:{failures[0].id}"]
    assert "cockpit doctor" in rows[0][1] and "Messages API cannot be reached" in rows[0][1]
    # the blocks it caused are covered by it: no blocked notice for them
    assert await store.query("SELECT key FROM outbox WHERE key LIKE 'blocked:%'") == []

    # a restart in the middle of the outage: the same outage goes on, still one notice
    await store.close()
    store = await Store.open(cfg.store_path)
    await commands.retry(store, tasks[0], actor="human:you")
    server.faults.push(*[FaultKind.SERVER_ERROR] * SDK_ATTEMPTS)
    await run(cfg, store, server)
    assert store.task(tasks[0]).state == TaskState.BLOCKED
    assert len(await store.events(kinds=[Kind.MODEL_UNAVAILABLE])) == 4
    assert [k for k, _ in await model_rows(store)] == [f"model:unreachable:{failures[0].id}"]

    # the model answers: the outage is over
    answered = (await commands.add_task(store, product="shop", title="Say hello")).task_id
    await run(cfg, store, server)
    assert await store.events(task_id=answered, kinds=[Kind.MODEL_CALL])
    # the next outage (the connection reset this time) is a new notice
    await commands.retry(store, tasks[1], actor="human:you")
    server.faults.push(*[FaultKind.RESET] * SDK_ATTEMPTS)
    await run(cfg, store, server)
    assert store.task(tasks[1]).blocked_by == ["model unavailable"]
    rows = await model_rows(store)
    second = (await store.events(kinds=[Kind.MODEL_UNAVAILABLE]))[-1]
    assert [k for k, _ in rows] == [f"model:unreachable:{failures[0].id}", f"model:unreachable:{second.id}"]
    await store.close()


async def test_a_model_unavailable_block_outside_an_outage_is_still_its_own_notice(tmp_path):
    """The suppression is the outage's: a block that names no outage (none recorded) still calls you."""
    store = await Store.open(tmp_path / "c.db")
    tid = (await commands.add_task(store, product="p", title="x")).task_id
    await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="p", task_id=tid, data={"agent": "b"}))
    await store.append(Event(kind=Kind.BLOCKED, actor="system", product="p", task_id=tid,
                             data={"reasons": ["model unavailable"], "detail": "x"}))
    assert [r[0] for r in await store.query("SELECT key FROM outbox")] == [f"blocked:{tid}:{store.last_event_id}"]
    await store.close()
