"""The whole factory, end to end and offline: real git, real sandbox, real SQLite, real SDK."""

import json
import subprocess
import sys

import pytest

from cockpit.cli import main


def run_cli(*args, capsys):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo") / "factory"
    code = main(["demo", "--headless", "--dir", str(d), "--timeout", "90"])
    assert code == 0
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
        # the tests verdict that let it through names the task's latest commit
        assert {"gate": "tests", "commit": t["commit"], "actor": "system", "outcome": "pass"} in t["verdicts"]
        assert any(a["commit"] == t["commit"] and a["actor"].startswith("reviewer-") for a in t["approvals"])
    (ledger,) = products["ledger"]["tasks"]
    assert ledger["state"] == "blocked" and ledger["blocked_by"] == ["tests"]
    assert "2.68" in ledger["block_detail"]
    assert st["spend_usd"] > 0
    assert st["spend_usd"] == pytest.approx(sum(t["spend_usd"] for t in tasks), abs=1e-6)
    # the product's own tests pass on main after the merges
    for name in ("shop", "weather"):
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=demo / "products" / name, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_human_sends_the_blocked_task_back_and_it_merges(demo, capsys):
    f = str(demo / "factory.toml")
    code, _, err = run_cli("approve", "T1", "--note", "x", "--factory", f, capsys=capsys)
    assert code == 1 and "refused" in err and "T1 is done" in err
    code, out, _ = run_cli("send-back", "T2", "-m", "Use Decimal with ROUND_HALF_UP", "--factory", f, capsys=capsys)
    assert code == 0 and "task.sent_back T2" in out
    code, out, _ = run_cli("run", "--headless", "--factory", f, "--timeout", "60", capsys=capsys)
    assert code == 0 and "T2    done" in out
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
