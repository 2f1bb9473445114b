"""Offline on one's own repository (issue 20, point 3): it says so, a task blocks with "no model", simulated
spend stays apart from real spend, and `run --headless` exits with a code that says whether work waits for you.

Real parts: `cockpit init`, `product add`, `task add`, `run --headless`, `status`, `spend`, `doctor` through the
real command line on a real git repo; the scripted model behind the real SDK; the store on a SQLite file; the
cockpit driven by Textual's pilot with a real orchestrator.
"""

from __future__ import annotations

import json

import pytest

from cockpit.cli import EXIT_ALL_DONE, EXIT_STILL_WORKING, EXIT_WAITS_FOR_YOU
from cockpit.cli import main as cli
from cockpit.config import load_factory
from cockpit.domain.budget import BudgetExceeded, BudgetLimits
from cockpit.factory.runtime import open_factory
from cockpit.store import Store
from cockpit.tui import CockpitApp
from gitrepo import make_repo
from tui_kit import screen_text, until


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("COCKPIT_FACTORY", raising=False)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def own_factory(tmp_path, capsys) -> str:
    home = tmp_path / "fac"
    assert run(capsys, "init", home)[0] == 0
    make_repo(tmp_path / "calc")
    factory = str(home / "factory.toml")
    assert run(capsys, "product", "add", tmp_path / "calc", "--yes", "--no-run", "--factory", factory)[0] == 0
    return factory


@pytest.mark.timeout(120)
def test_offline_a_task_blocks_with_no_model_its_spend_is_simulated_and_the_run_exits_3(tmp_path, capsys, offline):
    factory = own_factory(tmp_path, capsys)
    # nothing to do: all done
    assert run(capsys, "run", "--headless", "--factory", factory)[0] == EXIT_ALL_DONE
    assert run(capsys, "task", "add", "calc", "Add subtract", "--factory", factory)[0] == 0
    # stopped before anything could happen: still working
    assert run(capsys, "run", "--headless", "--timeout", "0", "--factory", factory)[0] == EXIT_STILL_WORKING

    code, out, _ = run(capsys, "run", "--headless", "--factory", factory)
    assert code == EXIT_WAITS_FOR_YOU, out
    assert "blocked by: no model" in out and "why: no model: set ANTHROPIC_API_KEY" in out
    assert "OFFLINE (no ANTHROPIC_API_KEY)" in out and "simulated" in out

    code, out, _ = run(capsys, "status", "--json", "--factory", factory)
    st = json.loads(out)
    (task,) = st["products"][0]["tasks"]
    assert task["blocked_by"] == ["no model"]
    assert task["block_detail"].startswith("no model: set ANTHROPIC_API_KEY") and "Its last words" not in \
        task["block_detail"]
    assert "write a scenario for it in" in task["block_detail"] and f"cockpit retry {task['id']}" in task["block_detail"]
    # the scripted model's call is simulated spend: never in the real figures
    assert task["spend_usd"] == 0 and task["simulated_usd"] > 0
    assert st["spend_usd"] == 0 and st["simulated_usd"] == pytest.approx(task["simulated_usd"])
    assert st["offline"] == "no ANTHROPIC_API_KEY"

    code, out, _ = run(capsys, "spend", "--json", "--by", "model", "--factory", factory)
    report = json.loads(out)
    assert report["total_usd"] == 0 and report["calls"] == 0
    assert report["simulated_calls"] == 1 and report["simulated_usd"] == pytest.approx(task["simulated_usd"])
    assert [r["key"] for r in report["rows"]] == ["claude-sonnet-5-5 (simulated)"]
    labels = [b["label"] for b in report["budgets"]]
    day = next(b for b in report["budgets"] if b["scope"] == "day" and not b["label"].endswith("(simulated)"))
    assert day["spent_usd"] == 0, "the real day budget is untouched by simulated spend"
    assert any(label.endswith("(simulated)") for label in labels)
    code, out, _ = run(capsys, "spend", "--factory", factory)
    assert "simulated calls (the offline scripted model's, not real money)" in out

    # the rate's cost metrics count real money only: the call is there, its simulated dollars are not
    code, out, _ = run(capsys, "rate", "--json", "--factory", factory)
    totals = json.loads(out)["factory"]["totals"]
    assert totals["model_calls"] == 1 and totals["tokens"] > 0 and totals["usd"] == 0

    # the agent's log says the same as the task
    code, out, _ = run(capsys, "tail", "builder-1", "-n", "50", "--factory", factory)
    assert code == 0 and "blocked: no model" in out and "sim $" in out


def test_doctor_says_offline_first(tmp_path, capsys, offline):
    factory = own_factory(tmp_path, capsys)
    code, out, _ = run(capsys, "doctor", "--quick", "--json", "--factory", factory)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["mode"]["status"] == "warn" and checks["mode"]["detail"].startswith("OFFLINE (no ANTHROPIC_API_KEY)")
    assert "no model: set ANTHROPIC_API_KEY" in checks["mode"]["detail"] and "simulated" in checks["mode"]["detail"]
    code, out, _ = run(capsys, "doctor", "--quick", "--factory", factory)
    assert "OFFLINE" in out
    text = (tmp_path / "fac" / "factory.toml").read_text()
    (tmp_path / "fac" / "factory.toml").write_text(text.replace('[model]\n', '[model]\nmode = "scripted"\n', 1))
    code, out, _ = run(capsys, "doctor", "--quick", "--json", "--factory", factory)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["mode"]["status"] == "ok" and checks["mode"]["detail"].startswith('OFFLINE ([model] mode = "scripted")')


async def test_simulated_spend_has_its_own_pool_of_each_budget(tmp_path):
    """Same limits, own totals: offline play never eats the real day's budget, and is itself bounded."""
    store = await Store.open(tmp_path / "c.db", budgets=BudgetLimits(day_usd=1.0))
    try:
        async def spend(call_id: str, usd: float, simulated: bool) -> None:
            await store.reserve(call_id=call_id, task_id=None, product="shop", actor="builder-1", model="m", usd=usd,
                                simulated=simulated)
            await store.settle(call_id=call_id, task_id=None, product="shop", usd=usd, usage={}, complete=True)

        await spend("real-1", 0.8, False)
        # the attack on one pool: a second real 0.8 does not fit the day
        with pytest.raises(BudgetExceeded):
            await spend("real-2", 0.8, False)
        # the same amount, simulated, fits: its pool is its own
        await spend("sim-1", 0.8, True)
        with pytest.raises(BudgetExceeded) as refused:
            await spend("sim-2", 0.3, True)
        assert refused.value.simulated and "(simulated spend, offline)" in refused.value.reason
        assert refused.value.figures()["spent_usd"] == pytest.approx(0.8)
        assert await store.spend_total() == pytest.approx(0.8)
        assert await store.spend_total(simulated=True) == pytest.approx(0.8)
    finally:
        await store.close()
    # reopened: the pools are rebuilt from the ledger apart
    store = await Store.open(tmp_path / "c.db", budgets=BudgetLimits(day_usd=1.0))
    try:
        with pytest.raises(BudgetExceeded):
            await store.reserve(call_id="sim-3", task_id=None, product="shop", actor="b", model="m", usd=0.3,
                                simulated=True)
        await store.reserve(call_id="real-3", task_id=None, product="shop", actor="b", model="m", usd=0.15)
    finally:
        await store.close()


@pytest.fixture
def factory(tmp_path, capsys, offline) -> str:
    return own_factory(tmp_path, capsys)


async def test_the_header_says_offline_and_shows_simulated_spend_apart(factory):
    config = load_factory(factory)
    async with open_factory(config) as f:
        await f.store.reserve(call_id="c1", task_id=None, product="calc", actor="builder-1", model="m", usd=0.5,
                              simulated=True)
        await f.store.settle(call_id="c1", task_id=None, product="calc", usd=0.42, usage={}, complete=True)
        app = CockpitApp(f.store, config, orchestrator=f.orchestrator)
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: "OFFLINE" in screen_text(app))
            head = screen_text(app).splitlines()[0]
            assert "OFFLINE" in head and "sim $0.42 today" in head and "$0.00 total" in head, head
        # a cockpit that drives nothing (another one runs the factory) does not claim a mode
        app = CockpitApp(f.store, config)
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: "total" in screen_text(app))
            assert "OFFLINE" not in screen_text(app).splitlines()[0]
