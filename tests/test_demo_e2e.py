"""The whole factory, end to end and offline: real git, real sandbox, real SQLite, real SDK."""

import json
import subprocess
import sys

import pytest

from cockpit.cli import main

# the module's demo fixture runs the whole demo (ten tasks on five products): ~20 s on an idle 2-core box,
# minutes on a loaded one; its time counts against the first test that uses it
pytestmark = pytest.mark.timeout(600)


def run_cli(*args, capsys):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo") / "factory"
    code = main(["demo", "--headless", "--dir", str(d), "--timeout", "300"])
    assert code == 3  # tasks wait for the human (the README's exit codes)
    return d


def status(d, capsys):
    code, out, _ = run_cli("status", "--json", "--factory", str(d / "factory.toml"), capsys=capsys)
    assert code == 0
    return {p["name"]: p for p in json.loads(out)["products"]}, json.loads(out)


def test_headless_demo_merges_one_and_blocks_one(demo, capsys):
    products, st = status(demo, capsys)
    tasks = [t for p in products.values() for t in p["tasks"]]
    done = [t for t in tasks if t["state"] == "done"]
    blocked = [t for t in tasks if t["state"] == "blocked"]
    assert done and blocked
    for t in done:
        repo = demo / "products" / next(n for n, p in products.items() if t in p["tasks"])
        # the merged commit is on main, and contains the task's commit
        git(repo, "merge-base", "--is-ancestor", t["merged_commit"], "main")
        git(repo, "merge-base", "--is-ancestor", t["commit"], "main")
        # what was tested is what landed: main's first-parent history holds the merged commit, and a
        # passing merge verdict names exactly that sha
        assert t["merged_commit"] in git(repo, "rev-list", "--first-parent", "main").split()
        assert {"gate": "merge", "commit": t["merged_commit"], "actor": "system", "outcome": "pass"} in t["verdicts"]
        # the tests verdict that let it through names the task's latest commit
        assert {"gate": "tests", "commit": t["commit"], "actor": "system", "outcome": "pass"} in t["verdicts"]
        assert any(a["commit"] == t["commit"] and a["actor"].startswith("reviewer-") for a in t["approvals"])
    (ledger,) = products["ledger"]["tasks"]
    assert ledger["state"] == "blocked" and ledger["blocked_by"] == ["tests"]
    assert "2.68" in ledger["block_detail"]
    assert st["spend_usd"] > 0
    assert st["spend_usd"] == pytest.approx(sum(t["spend_usd"] for t in tasks), abs=1e-4)
    # the demo's live agents are the offline scripted model: their spend is simulated, kept apart from real spend
    assert st["offline"] and st["simulated_usd"] > 0
    assert st["simulated_usd"] == pytest.approx(sum(t["simulated_usd"] for t in tasks), abs=1e-4)
    assert all(t["spend_usd"] == 0 for t in tasks if t["simulated_usd"])
    assert all(p["queue"] == [] for p in products.values())
    # the pair on inventory: both landed, the second after the merge queue sent it back
    inv = products["inventory"]["tasks"]
    assert [t["state"] for t in inv] == ["done", "done"]
    assert any(v["gate"] == "merge" and v["outcome"] == "fail" for t in inv for v in t["verdicts"])
    # the product's own tests pass on main after the merges
    for name in ("shop", "weather", "inventory"):
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=demo / "products" / name, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_human_sends_the_blocked_task_back_and_it_merges(demo, capsys):
    f = str(demo / "factory.toml")
    code, _, err = run_cli("approve", "T1", "--note", "x", "--factory", f, capsys=capsys)
    assert code == 1 and "refused" in err and "T1 is done" in err
    code, out, _ = run_cli("send-back", "T2", "-m", "Use Decimal with ROUND_HALF_UP", "--factory", f, capsys=capsys)
    assert code == 0 and "task.sent_back T2" in out
    code, out, _ = run_cli("run", "--headless", "--factory", f, "--timeout", "200", capsys=capsys)
    assert code == 3 and "T2    done" in out  # others still wait for the human
    products, _ = status(demo, capsys)
    (ledger,) = products["ledger"]["tasks"]
    assert ledger["state"] == "done", ledger
    git(demo / "products" / "ledger", "merge-base", "--is-ancestor", ledger["merged_commit"], "main")


def test_broken_factory_exits_2_naming_file_and_key(tmp_path, capsys):
    bad = tmp_path / "factory.toml"
    bad.write_text('[factory]\nname = "x"\n[[products]]\nname = "a"\npath = "."\n')
    code, _, err = run_cli("status", "--factory", str(bad), capsys=capsys)
    assert code == 2
    assert f"{bad}:3: key 'products[0].test_command' is required but missing" in err
    assert not (tmp_path / "memory").exists(), "nothing may be written for a broken factory"


# --- the team: builder, reviewer and breaker (scenarios shop_discounts.toml, weather_team.toml) -----------------


def events_of(demo, kinds):
    """The demo's event log, read through the store (a second reader of the same SQLite file)."""
    import asyncio

    from cockpit.store import Store

    async def read():
        store = await Store.open(demo / "memory" / "cockpit.db")
        try:
            return await store.events(kinds=kinds)
        finally:
            await store.close()

    return asyncio.run(read())


def task_titled(products, title):
    return next(t for p in products.values() for t in p["tasks"] if t["title"] == title)


def test_demo_breaker_defect_is_fixed_then_approved_independently_and_merged(demo, capsys):
    from cockpit.domain import Kind

    products, _ = status(demo, capsys)
    t = task_titled(products, "Add order discounts")
    assert t["state"] == "done", t
    first, second = [v["commit"] for v in t["verdicts"] if v["gate"] == "tests"][:2]
    assert t["commit"] == second and first != second
    assert t["defects"] == [{"id": "D1", "title": "a discount over 100% makes the total negative", "state": "closed",
                             "actor": t["defects"][0]["actor"], "commit": first, "closed_by": "system",
                             "closed_commit": second}]
    assert t["defects"][0]["actor"].startswith("breaker-")
    # the first approval is dismissed by the fix; the one that landed it is of the latest commit
    assert [a["commit"] for a in t["approvals"]] == [first, second]
    assert {"gate": "tests", "commit": second, "actor": "system", "outcome": "pass"} in t["verdicts"]
    log = events_of(demo, [Kind.DEFECT_REJECTED, Kind.DEFECT_OPENED, Kind.DEFECT_CLOSED, Kind.REFUSED,
                           Kind.CHANGES_REQUESTED])
    mine = [e for e in log if e.task_id == t["id"]]
    assert [e.kind for e in mine if e.kind != Kind.REFUSED] == [Kind.DEFECT_REJECTED, Kind.DEFECT_OPENED,
                                                                Kind.DEFECT_CLOSED]
    # the builder tried to approve its own fix: refused, and on record
    (refused,) = [e for e in mine if e.kind == Kind.REFUSED]
    assert refused.actor.startswith("builder-") and refused.data["kind"] == "tool:approve"
    wind = task_titled(products, "Add a wind chill formula")
    assert wind["state"] == "done" and wind["rounds"] == 1
    assert [e.actor.startswith("reviewer-") for e in log if e.task_id == wind["id"]] == [True]


def test_demo_builder_deleting_a_failing_test_blocks_for_the_human(demo, capsys):
    products, _ = status(demo, capsys)
    t = task_titled(products, "Round Kelvin to one decimal")
    assert t["state"] == "blocked" and t["blocked_by"] == ["tests removed"]
    assert "tests/test_units.py: 2 -> 1" in t["block_detail"]
    # checked while another weather task was checked green and not landed: on top of it first (a merge train),
    # then on main alone, which is what the block says
    assert [(v["gate"], v["outcome"]) for v in t["verdicts"] if v["gate"] != "train"] == [("tests", "pass"),
                                                                                         ("guard", "fail")]


def test_demo_six_agents_on_three_products_work_at_once_within_the_limits(demo):
    """Folded from the event log: how many sessions were open at once, and on which products."""
    from cockpit.domain import Kind

    running: dict[str, str] = {}
    widest: dict[str, str] = {}
    for e in events_of(demo, [Kind.AGENT_STARTED, Kind.AGENT_FINISHED, Kind.AGENT_STOPPED]):
        if e.data.get("demo_history"):
            continue  # the simulated past of the rate screen's products, not this run
        agent = e.data["agent"]
        if e.kind == Kind.AGENT_STARTED:
            running[agent] = e.product
        else:
            running.pop(agent, None)
        per_product = [list(running.values()).count(p) for p in set(running.values())]
        assert len(running) <= 6 and max(per_product, default=0) <= 2, running  # the demo's limits
        if len(running) > len(widest):
            widest = dict(running)
    assert len(widest) == 6 and len(set(widest.values())) >= 3, widest


# --- the meter (issue 5): spend equals usage x price, recomputed here from the raw price file ---------------------


def test_spend_json_equals_every_recorded_call_usage_times_price_to_the_cent(demo, capsys):
    import sqlite3
    import tomllib
    from contextlib import closing
    from importlib import resources

    f = str(demo / "factory.toml")
    code, out, _ = run_cli("spend", "--json", "--factory", f, capsys=capsys)
    assert code == 0
    report = json.loads(out)
    table = tomllib.loads(resources.files("cockpit.data").joinpath("prices.toml").read_text())["models"]

    def cost(model, u):
        p = table[model]
        w1h = u.get("cache_creation_1h_input_tokens", 0)
        w5m = u["cache_creation_input_tokens"] - w1h
        return (u["input_tokens"] * p["input"] + u["output_tokens"] * p["output"]
                + w5m * p.get("cache_write_5m", p["input"] * 1.25) + w1h * p.get("cache_write_1h", p["input"] * 2)
                + u["cache_read_input_tokens"] * p.get("cache_read", p["input"] * 0.1)) / 1e6

    calls = events_of(demo, ["model.call"])
    with closing(sqlite3.connect(demo / "memory" / "cockpit.db")) as raw:
        states = raw.execute("SELECT state, COUNT(*) FROM ledger GROUP BY state").fetchall()
    assert states == [("settled", len(calls))], "every call completed and settled (no broken stream in the demo)"
    expected = sum(cost(e.data["model"], e.data["usage"]) for e in calls)
    assert report["calls"] + report["simulated_calls"] == len(calls) > 10
    assert report["simulated_calls"] == len([e for e in calls if e.data.get("simulated")]) > 0
    # to the cent (the simulated history rounds each call to 1e-6)
    assert abs(report["total_usd"] + report["simulated_usd"] - expected) < 0.005
    # the calls the demo's agents really made (not the simulated history): exact to a hundred-thousandth of a
    # dollar (each row of the report is rounded to a millionth, so a sum of rows may be off by a few of those)
    live = sum(cost(e.data["model"], e.data["usage"]) for e in calls if not e.data.get("demo_history"))
    metered = sum(r["settled_usd"] for r in report["rows"] if not r["key"].startswith("history-"))
    assert live > 0 and metered == pytest.approx(live, abs=1e-5)
    assert report["reserved_usd"] == 0
    # every view adds up to the same total, and the prompt cache did its work
    for by in ("product", "task", "agent", "role", "model", "day"):
        code, out, _ = run_cli("spend", "--json", "--by", by, "--factory", f, capsys=capsys)
        rows = json.loads(out)["rows"]
        assert sum(r["settled_usd"] for r in rows) == pytest.approx(expected, abs=1e-5), by
    def read_ratio(usages):
        read = sum(u["cache_read_input_tokens"] for u in usages)
        return read / sum(u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
                          for u in usages)

    # the ratio is of real spend's calls (here the history's); the simulated calls are counted apart
    assert report["cache_read_ratio"] == pytest.approx(
        read_ratio([e.data["usage"] for e in calls if not e.data.get("simulated")]), abs=1e-4)
    assert read_ratio([e.data["usage"] for e in calls if not e.data.get("demo_history")]) > 0.5
    code, out, _ = run_cli("status", "--json", "--factory", f, capsys=capsys)
    st = json.loads(out)
    assert st["burn_usd_per_hour"] >= 0 and all(p["reserved_usd"] == 0 for p in st["products"])
    # each configured product shows its budget (the simulated history's products are not configured)
    from cockpit.config import load_factory

    configured = {p.name: p.budget_usd for p in load_factory(f).products}
    assert set(configured.values()) == {5.0}
    assert {p["name"]: p["budget_usd"] for p in st["products"] if p["name"] in configured} == configured


def test_every_blocked_task_of_the_demo_is_a_notice_with_the_command_to_act(demo, capsys):
    """The demo's blocks (the ledger's failing tests among them) are outbox rows, and a local webhook receives
    each with the product, the reason and the `cockpit send-back` that acts on it."""
    import asyncio

    import httpx2
    from notify_kit import Receiver

    from cockpit.factory.notify_sender import WebhookSender
    from cockpit.store import Store

    products, _ = status(demo, capsys)
    blocked = {t["id"]: name for name, p in products.items() for t in p["tasks"] if t["state"] == "blocked"}
    assert blocked
    code, out, _ = run_cli("notify", "list", "--json", "--factory", str(demo / "factory.toml"), capsys=capsys)
    assert code == 0
    assert {r["notice"]["task_id"] for r in json.loads(out) if r["state"] == "pending"} >= set(blocked)
    rec = Receiver()

    async def deliver():
        store = await Store.open(demo / "memory" / "cockpit.db")
        try:
            async with httpx2.AsyncClient() as client:
                await WebhookSender(store, rec.url).deliver_due(client)
        finally:
            await store.close()

    try:
        asyncio.run(deliver())
    finally:
        rec.close()
    got = {g["task_id"]: g for g in rec.got}
    for tid, product in blocked.items():
        assert got[tid]["product"] == product and got[tid]["reason"]
        assert f'cockpit send-back {tid} -m "…"' in got[tid]["text"]
    # the seeded history's blocks, resolved weeks ago, page nobody (test_notify_outbox: with the rule off they do)
    assert not [g["task_id"] for g in rec.got if (g.get("product") or "").startswith("history-")], rec.got
    code, out, _ = run_cli("notify", "list", "--factory", str(demo / "factory.toml"), capsys=capsys)
    assert code == 0 and "sent" in out and "stale" in out
