"""A call that would overspend is never sent: the task blocks at `budget` with the figures; a raise and a retry land it.

Real orchestrator, real git, sandbox and SQLite, the real SDK over HTTP to the scripted model
(whose request log proves which calls were made).
"""

import json

import anthropic
import pytest

from cockpit.agents.client import ModelClient
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer, system_text
from cockpit.cli import main
from cockpit.config import load_factory
from cockpit.domain import Kind, TaskState
from cockpit.factory import commands
from cockpit.factory.orchestrator import Orchestrator
from cockpit.store import Store
from factory_kit import write_factory


# a cheap builder; a reviewer and a breaker whose every call may cost up to 64000 output tokens at opus rates
# (a $1.60 reservation): they cannot start on a $1 product budget, whatever the builder spent
ROLES = """
[roles.builder]
model = "claude-haiku-4-5"
max_tokens = 1024

[roles.reviewer]
model = "claude-opus-4-6"
max_tokens = 64000

[roles.breaker]
model = "claude-opus-4-6"
max_tokens = 64000
"""


def roles_in(requests):
    return [next(line.split(":", 1)[1].strip() for line in system_text(r.get("system")).splitlines()
                 if line.startswith("ROLE:")) for r in requests]


@pytest.fixture
def factory(tmp_path):
    path = write_factory(tmp_path / "f", scenario_files=("notes_builder.toml", "notes_judges.toml"))
    # the product block is the file's last table: its budget goes right after it, then the roles
    path.write_text(path.read_text() + "budget_usd = 1.0\n\n" + ROLES)
    return load_factory(path)


async def test_a_call_that_would_overspend_is_never_sent_and_a_raise_then_retry_lands_the_task(factory):
    cfg = factory
    assert cfg.product("shop").budget_usd == 1.0
    store = await Store.open(cfg.store_path, budgets=cfg.budget_limits())
    with ScriptedModelServer(ScriptedModel.from_paths([cfg.scenarios_path])) as server:
        client = anthropic.AsyncAnthropic(api_key="test", base_url=server.base_url, max_retries=0)
        orch = Orchestrator(cfg, store, ModelClient(client, "scripted"))
        tid = (await commands.add_task(store, product="shop", title="Write notes")).task_id
        await orch.run(until_idle=True, timeout=90)
        await store.flush()

        t = store.task(tid)
        assert t.state == TaskState.BLOCKED and t.blocked_by == ["budget"], t
        assert t.resume_state == TaskState.REVIEWING and t.commit is not None
        # the builder's three calls were made; no reviewer or breaker call ever reached the model
        assert roles_in(server.requests) == ["builder"] * 3
        calls = await store.events(kinds=[Kind.MODEL_CALL])
        spent = sum(e.data["usd"] for e in calls)
        assert len(calls) == 3 and 0 < spent < 0.1
        # the block shows spent, reserved, the limit and the estimate of the call that was not made
        (block,) = await store.events(task_id=tid, kinds=[Kind.BLOCKED])
        fig = block.data["budget"]
        assert (fig["scope"], fig["key"], fig["limit_usd"], fig["reserved_usd"]) == ("product", "shop", 1.0, 0.0)
        assert fig["spent_usd"] == pytest.approx(spent, abs=1e-6)
        assert fig["estimate_usd"] > 64000 * 25 / 1e6
        assert f"spent ${spent:.4f} + reserved $0.0000 + next call estimate ${fig['estimate_usd']:.4f} > limit $1.0000" \
            in t.block_detail
        assert "cockpit budget raise --product shop" in t.block_detail
        # nothing is held by the refused calls
        assert await store.query("SELECT DISTINCT state FROM ledger") == [("settled",)]

        # retrying without a raise blocks again at once, still without a call
        await commands.retry(store, tid, actor="human:you")
        await orch.run(until_idle=True, timeout=60)
        assert store.task(tid).blocked_by == ["budget"] and len(server.requests) == 3

        # the human raises whichever budget blocked it (the cockpit's key) and retries: it lands
        raised = await commands.raise_blocking_budget(store, tid, usd=5.0, actor="human:you")
        assert raised.kind == Kind.BUDGET_RAISED and raised.data == {"scope": "product", "key": "shop", "usd": 5.0}
        await commands.retry(store, tid, actor="human:you")
        await orch.run(until_idle=True, timeout=90)
        await store.flush()
        t = store.task(tid)
        assert t.state == TaskState.DONE, t
        assert sorted(set(roles_in(server.requests))) == ["breaker", "builder", "reviewer"]
        rows = await store.query("SELECT SUM(settled_usd), SUM(reserved_usd) FROM ledger WHERE state != 'settled'")
        assert rows == [(None, None)]
        (settled,) = (await store.query("SELECT SUM(settled_usd) FROM ledger WHERE product = 'shop'"))[0]
        # the scripted model played every call: its spend is simulated, kept apart from real spend
        assert settled <= 6.0 and t.simulated_usd == pytest.approx(settled, abs=1e-6) and t.spend_usd == 0
        await client.close()
    await store.close()


def test_the_cli_raises_a_budget_as_the_human_and_status_shows_it(factory, capsys):
    f = str(factory.path)
    assert main(["budget", "raise", "--product", "shop", "--usd", "2.5", "--factory", f]) == 0
    assert "budget.raised product shop +$2.5000" in capsys.readouterr().out
    # `--factory` alone names the factory-wide budget, which this factory does not have
    assert main(["budget", "raise", "--factory", "--usd", "1", "-f", f]) == 1
    assert "no factory budget (unlimited)" in capsys.readouterr().err
    assert main(["budget", "raise", "--product", "shop", "--day", "--usd", "1", "-f", f]) == 1
    assert "exactly one of" in capsys.readouterr().err
    assert main(["status", "--json", "--factory", f]) == 0
    st = json.loads(capsys.readouterr().out)
    (shop,) = st["products"]
    assert (shop["budget_usd"], shop["reserved_usd"], st["burn_usd_per_hour"]) == (3.5, 0.0, 0.0)
    assert main(["spend", "--json", "--factory", f]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_usd"] == 0 and report["budgets"][0]["limit_usd"] == 3.5
