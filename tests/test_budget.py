"""Budgets: pure arithmetic, atomic reservations in the store's writer, restart, raises, reconcile, concurrency."""

import asyncio
import sqlite3
import tempfile
import time
from collections import defaultdict
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cockpit.domain import Event, Kind, Refused, fold
from cockpit.domain.budget import (
    BudgetBook, BudgetExceeded, BudgetLimits, Reservation, Scope, Settlement, day_of, parse_raise, scopes_of,
)
from cockpit.domain.tasks import gate_lights
from cockpit.factory import commands
from cockpit.store import Store
from factory_kit import write_plain_factory

TODAY = day_of(time.time())


def res(call_id, usd, task_id="T1", product="shop", ts=None):
    return Reservation(call_id=call_id, task_id=task_id, product=product, actor="builder-1", model="m", usd=usd,
                       ts=time.time() if ts is None else ts)


# --- pure arithmetic -------------------------------------------------------------------


def test_a_call_counts_against_its_task_product_day_and_the_factory():
    assert scopes_of("T1", "shop", "2026-01-02") == (
        (Scope.TASK, "T1"), (Scope.PRODUCT, "shop"), (Scope.DAY, "2026-01-02"), (Scope.FACTORY, ""))
    assert scopes_of(None, None, "d") == ((Scope.DAY, "d"), (Scope.FACTORY, ""))


def test_reservation_refused_with_the_figures_when_it_would_pass_a_limit():
    book = BudgetBook(BudgetLimits(product_usd={"shop": 1.0}))
    txn = book.begin()
    txn.apply(txn.prepare_reserve(res("a", 0.6), None))
    txn.apply(txn.prepare_settle(Settlement("a", 0.25)))
    txn.apply(txn.prepare_reserve(res("b", 0.5), None))
    with pytest.raises(BudgetExceeded) as e:
        txn.prepare_reserve(res("c", 0.3), None)
    x = e.value
    assert (x.scope, x.key, x.spent, x.reserved, x.limit, x.estimate) == (Scope.PRODUCT, "shop", 0.25, 0.5, 1.0, 0.3)
    assert "spent $0.2500 + reserved $0.5000 + next call estimate $0.3000 > limit $1.0000" in x.reason
    assert "cockpit budget raise --product shop" in x.detail()
    # exactly up to the limit is allowed
    txn.apply(txn.prepare_reserve(res("d", 0.25), None))
    txn.commit()
    assert book.total((Scope.PRODUCT, "shop")).used == 1_000_000_000


def test_settlement_replaces_the_reservation_and_unsettled_keeps_the_rest_held():
    book = BudgetBook()
    txn = book.begin()
    txn.apply(txn.prepare_reserve(res("a", 0.5), None))
    txn.apply(txn.prepare_reserve(res("b", 0.5), None))
    txn.apply(txn.prepare_settle(Settlement("a", 0.1)))
    step = txn.prepare_settle(Settlement("b", 0.2, complete=False))
    assert step.spend_delta_usd == pytest.approx(0.2)
    txn.apply(step)
    txn.commit()
    t = book.total((Scope.TASK, "T1"))
    assert (t.settled, t.held) == (300_000_000, 300_000_000)
    assert set(book.open) == {"b"} and book.open["b"].state == "unsettled"
    # reconciling frees what the dead stream still held; the spend grows only by what is added
    txn = book.begin()
    with pytest.raises(Refused, match="cannot settle lower"):
        txn.prepare_settle(Settlement("b", 0.1, reconcile=True))
    step = txn.prepare_settle(Settlement("b", 0.25, reconcile=True))
    assert step.spend_delta_usd == pytest.approx(0.05)
    txn.apply(step)
    txn.commit()
    assert (book.total((Scope.FACTORY, "")).settled, book.total((Scope.FACTORY, "")).held) == (350_000_000, 0)
    with pytest.raises(Refused, match="no open reservation"):
        book.begin().prepare_settle(Settlement("b", 0.3))


def test_a_dropped_batch_leaves_the_book_untouched():
    book = BudgetBook(BudgetLimits(factory_usd=1.0))
    txn = book.begin()
    txn.apply(txn.prepare_reserve(res("a", 0.9), None))
    # not committed: the next batch sees nothing of it
    book.begin().prepare_reserve(res("b", 0.9), None)
    assert book.totals == {} and book.open == {}


def test_only_a_human_raises_a_budget_and_raises_add_up():
    with pytest.raises(Refused, match="only a human"):
        parse_raise("builder-1", None, {"scope": "product", "key": "shop", "usd": 1})
    with pytest.raises(Refused, match="positive"):
        parse_raise("human:you", None, {"scope": "factory", "usd": -1})
    with pytest.raises(Refused, match="scope must be"):
        parse_raise("human:you", None, {"scope": "galaxy", "usd": 1})
    book = BudgetBook(BudgetLimits(day_usd=2.0, product_usd={"shop": 1.0, "free": None}))
    for amount in (0.5, 0.25):
        book.load_raise("human:you", None, {"scope": "product", "key": "shop", "usd": amount})
    book.load_raise("human:you", None, {"scope": "product", "key": "free", "usd": 3})
    assert book.limit((Scope.PRODUCT, "shop")) == 1.75
    assert book.limit((Scope.PRODUCT, "free")) is None  # unlimited stays unlimited
    assert book.limit((Scope.DAY, TODAY)) == 2.0 and book.limit((Scope.FACTORY, "")) is None
    assert book.limit((Scope.TASK, "T1"), task_budget_usd=0.3) == 0.3


# --- the store ---------------------------------------------------------------------------


async def new_task(store, product="shop", budget_usd=None):
    data = {"title": "x"} if budget_usd is None else {"title": "x", "budget_usd": budget_usd}
    return (await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product=product, data=data))).task_id


def held_and_settled(db: Path) -> dict[tuple[str, str], float]:
    """settled + held per budget, recomputed from the ledger file alone (not from the store's book)."""
    used: dict[tuple[str, str], float] = defaultdict(float)
    with closing(sqlite3.connect(db)) as raw:
        rows = raw.execute("SELECT ts, task_id, product, state, reserved_usd, settled_usd FROM ledger").fetchall()
    for ts, task_id, product, state, reserved, settled in rows:
        held = reserved if state == "reserved" else max(reserved - settled, 0) if state == "unsettled" else 0
        for key in [("task", task_id), ("product", product), ("day", day_of(ts)), ("factory", "")]:
            if key[1] is not None:
                used[key] += settled + held
    return used


async def test_twenty_agents_at_once_never_overspend_one_product_budget(tmp_path):
    store = await Store.open(tmp_path / "c.db", budgets=BudgetLimits(product_usd={"shop": 1.0}))
    tid = await new_task(store)
    results = await asyncio.gather(*(store.reserve(call_id=f"c{i}", task_id=tid, product="shop", actor=f"builder-{i}",
                                                   model="m", usd=0.3) for i in range(20)), return_exceptions=True)
    ok = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(ok) == 3 and len(refused) == 17
    assert await store.query("SELECT COUNT(*), SUM(reserved_usd) FROM ledger") == [(3, pytest.approx(0.9))]
    # each refusal is recorded with its figures
    recorded = await store.events(kinds=[Kind.REFUSED])
    assert len(recorded) == 17 and recorded[0].data["budget"]["limit_usd"] == 1.0
    assert recorded[-1].data["budget"] == {"scope": "product", "key": "shop", "spent_usd": 0.0, "reserved_usd": 0.9,
                                           "limit_usd": 1.0, "estimate_usd": 0.3}
    await store.close()


async def test_unsettled_and_orphaned_reservations_count_after_a_restart_until_reconciled(tmp_path):
    db = tmp_path / "c.db"
    limits = BudgetLimits(factory_usd=1.0)
    store = await Store.open(db, budgets=limits)
    tid = await new_task(store)
    await store.reserve(call_id="dead", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.4)
    await store.settle(call_id="dead", task_id=tid, product="shop", usd=0.1, usage={"output_tokens": 10}, complete=False)
    await store.reserve(call_id="inflight", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.4)
    with pytest.raises(Refused, match="in flight"):
        await commands.reconcile(store, actor="human:you", call_id="inflight")
    await store.close()  # a crash: 'inflight' is never settled

    store = await Store.open(db, budgets=limits)
    assert store.task(tid).spend_usd == pytest.approx(0.1)
    # 0.1 spent + 0.3 still held by the dead stream + 0.4 by the orphan: 0.3 more does not fit
    with pytest.raises(BudgetExceeded) as e:
        await store.reserve(call_id="next", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.3)
    assert (e.value.spent, e.value.reserved) == (pytest.approx(0.1), pytest.approx(0.7))
    done = await commands.reconcile(store, actor="human:you")
    assert sorted(done) == ["dead", "inflight"]
    await store.reserve(call_id="next", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.3)
    assert await store.query("SELECT call_id, state, settled_usd FROM ledger ORDER BY call_id") == [
        ("dead", "settled", 0.1), ("inflight", "settled", 0.0), ("next", "reserved", 0.0)]
    assert store.task(tid).spend_usd == pytest.approx(0.1)
    await store.close()


async def test_raises_are_events_rebuilt_after_a_restart_and_a_task_raise_lifts_its_budget_gate(tmp_path):
    db = tmp_path / "c.db"
    limits = BudgetLimits(product_usd={"shop": 0.5}, day_usd=10.0)
    store = await Store.open(db, budgets=limits)
    tid = await new_task(store, budget_usd=0.2)
    with pytest.raises(BudgetExceeded, match="task T1 budget"):
        await store.reserve(call_id="a", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.3)
    with pytest.raises(Refused, match="only a human"):
        await store.append(Event(kind=Kind.BUDGET_RAISED, actor="builder-1", product="shop",
                                 data={"scope": "product", "key": "shop", "usd": 9}))
    with pytest.raises(Refused, match="only a human"):
        await store.append(Event(kind=Kind.BUDGET_RAISED, actor="builder-1", product="shop", task_id=tid,
                                 data={"scope": "task", "key": tid, "usd": 9}))
    await commands.raise_budget(store, scope="task", key=tid, usd=0.4, actor="human:you")
    assert store.task(tid).budget_usd == pytest.approx(0.6)
    with pytest.raises(BudgetExceeded, match="product shop budget"):
        await store.reserve(call_id="a", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.55)
    await store.reserve(call_id="b", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.25)
    await store.settle(call_id="b", task_id=tid, product="shop", usd=0.25, usage={})
    assert gate_lights(store.task(tid))["budget"] == "pass"
    await commands.raise_budget(store, scope="product", key="shop", usd=1.0, actor="human:you")
    await commands.raise_budget(store, scope="day", usd=0.5, actor="human:you")
    await store.close()

    store = await Store.open(db, budgets=limits)
    assert store.budget.limit((Scope.PRODUCT, "shop")) == 1.5
    assert store.budget.limit((Scope.DAY, TODAY)) == 10.5
    assert store.task(tid).budget_usd == pytest.approx(0.6)
    assert fold(await store.events()) == {t.id: t for t in store.tasks()}
    await store.reserve(call_id="c", task_id=tid, product="shop", actor="builder-1", model="m", usd=0.15)
    with pytest.raises(Refused, match="has no budget of its own"):
        await commands.raise_budget(store, scope="task", key=await new_task(store), usd=1, actor="human:you")
    await store.close()


async def test_which_budget_a_raise_on_a_task_lifts_is_decided_below_the_screen(tmp_path):
    """The one-key raise (TUI `+`) and `cockpit budget raise` meet the same rule in factory/commands.py: the
    budget that blocked the task, else its own, else its product's; an unlimited budget is refused whoever asks."""
    store = await Store.open(tmp_path / "c.db", budgets=BudgetLimits(product_usd={"shop": 0.5, "free": None}))
    own = await new_task(store, budget_usd=0.2)
    assert commands.task_raise_choice(store, own).scope == Scope.TASK
    plain = await new_task(store)
    choice = commands.task_raise_choice(store, plain)
    assert (choice.scope, choice.key, choice.label) == (Scope.PRODUCT, "shop", "the budget of shop")
    await commands.raise_task_budget(store, plain, usd=1.0, actor="human:you")
    assert store.budget.limit((Scope.PRODUCT, "shop")) == 1.5
    with pytest.raises(BudgetExceeded):  # blocked by the task's own budget: that is the one `+` lifts
        await store.reserve(call_id="a", task_id=own, product="shop", actor="builder-1", model="m", usd=0.3)
    unlimited = (await commands.add_task(store, product="free", title="no limits", actor="human:you")).task_id
    with pytest.raises(Refused, match="free has no budget"):
        commands.task_raise_choice(store, unlimited)
    for scope, key, why in (("product", "free", "no budget"), ("product", "gone", "no product 'gone'"),
                            ("day", None, "no day budget"), ("factory", None, "no factory budget")):
        with pytest.raises(Refused, match=why):
            await commands.raise_budget(store, scope=scope, key=key, usd=1.0, actor="human:you")
    raises = await store.events(kinds=[Kind.BUDGET_RAISED])
    assert [(e.data["scope"], e.data["key"]) for e in raises] == [("product", "shop")]  # the refused left nothing
    await store.close()


async def test_a_new_task_takes_its_products_default_budget_from_the_cli_and_the_screen_alike(tmp_path):
    from cockpit.config import load_factory

    config = load_factory(write_plain_factory(tmp_path, product_extra="task_budget_usd = 0.75\n"))
    store = await Store.open(tmp_path / "c.db")
    ev = await commands.queue_task(store, config, product="shop", title="t", actor="human:you")
    assert store.task(ev.task_id).budget_usd == 0.75
    with pytest.raises(Refused, match="no product 'nope'.*products: shop"):
        await commands.queue_task(store, config, product="nope", title="t", actor="human:you")
    await store.close()


# --- the property: random interleavings of 20 concurrent agents --------------------------

LIMITS = st.fixed_dictionaries({
    "factory": st.one_of(st.none(), st.floats(0.5, 6.0)),
    "day": st.one_of(st.none(), st.floats(0.5, 6.0)),
    "a": st.one_of(st.none(), st.floats(0.2, 3.0)),
    "b": st.one_of(st.none(), st.floats(0.2, 3.0)),
    "tasks": st.lists(st.one_of(st.none(), st.floats(0.1, 1.5)), min_size=4, max_size=4),
})
CALL = st.tuples(
    st.floats(0.01, 0.6),                                  # the reservation
    st.floats(0.0, 1.0),                                   # the share of it the call really cost
    st.sampled_from(["settle", "settle", "die", "crash"]),  # how it ends: settled, broken stream, never settled
    st.integers(0, 3), st.integers(0, 3),                  # yields before reserving, before settling
)
AGENTS = st.lists(st.lists(CALL, min_size=1, max_size=4), min_size=20, max_size=20)


def check_within_budgets(db: Path, limits: dict, task_products: dict[str, str]) -> None:
    used = held_and_settled(db)
    bounds = {("factory", ""): limits["factory"], ("product", "a"): limits["a"], ("product", "b"): limits["b"],
              ("day", TODAY): limits["day"]}
    bounds.update({("task", t): lim for t, lim in zip(task_products, limits["tasks"], strict=True)})
    for key, limit in bounds.items():
        if limit is not None:
            assert used.get(key, 0.0) <= limit + 1e-6, (key, used.get(key), limit)


async def play(db: Path, limits: dict, agents: list) -> int:
    budgets = BudgetLimits(factory_usd=limits["factory"], day_usd=limits["day"],
                           product_usd={"a": limits["a"], "b": limits["b"]})
    store = await Store.open(db, budgets=budgets)
    task_products = {}
    for i, lim in enumerate(limits["tasks"]):
        tid = await new_task(store, product="ab"[i % 2], budget_usd=lim)
        task_products[tid] = "ab"[i % 2]
    tids = list(task_products)
    refused = 0

    async def agent(n: int, calls: list) -> None:
        nonlocal refused
        tid = tids[n % len(tids)]
        for k, (usd, share, end, y1, y2) in enumerate(calls):
            for _ in range(y1):
                await asyncio.sleep(0)
            call = f"a{n}-{k}"
            try:
                await store.reserve(call_id=call, task_id=tid, product=task_products[tid], actor=f"builder-{n + 1}",
                                    model="m", usd=usd)
            except BudgetExceeded:
                refused += 1
                continue
            check_within_budgets(db, limits, task_products)
            for _ in range(y2):
                await asyncio.sleep(0)
            if end != "crash":
                await store.settle(call_id=call, task_id=tid, product=task_products[tid], usd=round(usd * share, 6),
                                   usage={}, complete=end == "settle")
            check_within_budgets(db, limits, task_products)

    await asyncio.gather(*(agent(n, calls) for n, calls in enumerate(agents)))
    await store.close()
    check_within_budgets(db, limits, task_products)
    # after a restart the book is rebuilt from the ledger: what it holds is what the file says
    store = await Store.open(db, budgets=budgets)
    used = held_and_settled(db)
    for (scope, key), total in store.budget.totals.items():
        assert total.used / 1e9 == pytest.approx(used.get((scope.value, key), 0.0), abs=1e-6)
    await store.close()
    return refused


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(limits=LIMITS, agents=AGENTS)
def test_random_interleavings_of_twenty_agents_never_leave_settled_plus_reserved_above_a_budget(limits, agents):
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(play(Path(d) / "cockpit.db", limits, agents))


# --- a stream that dies mid-way, through the real SDK ----------------------------------------


async def test_a_call_that_dies_mid_stream_is_settled_from_what_arrived_and_the_rest_stays_held(tmp_path):
    import anthropic

    from cockpit.agents.faults import FaultInjector, FaultKind
    from cockpit.agents.loop import AgentSession, ModelUnavailable
    from cockpit.agents.roles import system_prompt
    from cockpit.agents.scenarios import Script
    from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
    from cockpit.agents.tools import WorktreeTools
    from cockpit.domain.prices import Usage, default_prices
    from cockpit.host.sandbox import Sandbox
    from cockpit.factory.task_tools import TaskToolbox
    from cockpit.factory.workspaces import Workspaces
    from gitrepo import make_repo

    script = Script.model_validate({"role": "builder", "match": ["Write notes"], "turns": [
        {"text": "I will write the notes file now, then commit it. " * 8,
         "tool_use": [{"name": "write_file", "input": {"path": "NOTES.md", "content": "hello\n"}}]}]})
    store = await Store.open(tmp_path / "c.db", budgets=BudgetLimits(factory_usd=1.0))
    tid = (await commands.add_task(store, product="p", title="Write notes")).task_id
    wt = await Workspaces(tmp_path / "wt").ensure("p", make_repo(tmp_path / "repo"), "main", tid)
    with ScriptedModelServer(ScriptedModel([script])) as server:
        server.faults = FaultInjector()
        server.faults.push(FaultKind.TRUNCATE)
        client = anthropic.AsyncAnthropic(api_key="t", base_url=server.base_url, max_retries=0, timeout=5.0)
        toolbox = TaskToolbox(role="builder", agent="builder-1", task_id=tid, product="p", worktree=wt,
                              worktree_tools=WorktreeTools(wt, Sandbox("bwrap")), store=store,
                              workspaces=Workspaces(tmp_path / "wt"))
        session = AgentSession(agent="builder-1", role="builder", product="p", task_id=tid, client=client,
                               model="claude-sonnet-4-6", max_tokens=1024, toolbox=toolbox, store=store,
                               system=system_prompt(role="builder", agent="builder-1", product="p"),
                               prices=default_prices(), stream_retries=0)
        with pytest.raises(ModelUnavailable):
            await session.run("Task: Write notes")
        await client.close()
    await store.flush()
    ((state, reserved, settled, inp, out, created, read),) = await store.query(
        "SELECT state, reserved_usd, settled_usd, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens "
        "FROM ledger")
    # message_start told the input; the output is at least what streamed before the break
    assert state == "unsettled" and inp + created > 0 and out > 1
    usage = Usage(input_tokens=inp, output_tokens=out, cache_creation_input_tokens=created, cache_read_input_tokens=read)
    assert settled == pytest.approx(default_prices().cost("claude-sonnet-4-6", usage))
    assert 0 < settled < reserved
    held = store.budget.total((Scope.FACTORY, ""))
    assert (held.settled, held.held) == (round(settled * 1e9), round((reserved - settled) * 1e9))
    assert store.task(tid).spend_usd == pytest.approx(settled)
    await commands.reconcile(store, actor="human:you")
    assert store.budget.total((Scope.FACTORY, "")).held == 0
    assert await store.query("SELECT state, settled_usd FROM ledger") == [("settled", settled)]
    await store.close()


def test_budgets_in_factory_toml(tmp_path):
    from cockpit.config import ConfigError, load_factory

    f = tmp_path / "factory.toml"
    f.write_text('[budgets]\nday_usd = 20\nfactory_usd = 500\n\n[[products]]\nname = "shop"\npath = "."\n'
                 'test_command = "true"\nbudget_usd = 5\ntask_budget_usd = 1\n')
    assert load_factory(f).budget_limits() == BudgetLimits(day_usd=20, factory_usd=500, product_usd={"shop": 5})
    f.write_text('[budgets]\nweek_usd = 20\n')
    with pytest.raises(ConfigError, match="budgets.week_usd"):
        load_factory(f)
