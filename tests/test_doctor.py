"""`cockpit doctor` and the real-API path: a 127.0.0.1 Messages-API server (the scripted model) stands in
for Anthropic, reached through ANTHROPIC_BASE_URL with a fake ANTHROPIC_API_KEY, exactly as the API would be."""

import asyncio
import json
import logging
import shutil
import sqlite3
import subprocess

import pytest
from factory_kit import SCENARIOS
from gitrepo import make_repo

from cockpit.agents.client import make_client
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
from cockpit.cli import main
from cockpit.config import load_factory
from cockpit.factory.products import edit_factory
from cockpit.store.schema import SCHEMA_VERSION
from test_own_factory import FAST_PYTEST, cli

FAKE_KEY = "sk-ant-test-" + "K3Y" * 12  # a sentinel: it must never show up anywhere but the transport


def set_mode(f, mode):
    edit_factory(f, lambda doc: doc["model"].__setitem__("mode", mode))


@pytest.fixture
def factory(tmp_path, capsys, monkeypatch):
    """A fresh factory with one product (calc), in API mode; no key or base URL set yet."""
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "COCKPIT_FACTORY"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "factory"
    assert main(["init", str(home)]) == 0
    f = home / "factory.toml"
    repo = make_repo(tmp_path / "calc")
    assert main(["product", "add", str(repo), "--test", FAST_PYTEST, "--no-run", "--yes", "--factory", str(f)]) == 0
    set_mode(f, "api")
    capsys.readouterr()
    return f, repo


@pytest.fixture
def api(monkeypatch):
    """A Messages-API server on 127.0.0.1 that the SDK reaches through ANTHROPIC_BASE_URL."""
    server = ScriptedModelServer(ScriptedModel.from_paths([]))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.start())
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    yield server
    server.stop()


def rows(out):
    return {c["name"]: c for c in json.loads(out)["checks"]}


def test_doctor_reaches_the_model_endpoint_then_says_what_to_fix_when_it_is_down(factory, api, capsys):
    f, _ = factory
    code, out, err = cli(capsys, "doctor", "--quick", "--live", "--factory", f)
    assert code == 0, out
    assert "ANTHROPIC_API_KEY is set (not shown); the real API is used" in out
    assert f"ok    model claude-sonnet-5-5  reachable at {api.base_url} (ANTHROPIC_BASE_URL): count_tokens answered" in out
    assert "a one-token message answered" in out
    sent = api.requests[-1]
    assert sent["max_tokens"] == 1 and sent["model"] == "claude-sonnet-5-5"
    assert FAKE_KEY not in out + err

    api.stop()
    code, out, err = cli(capsys, "doctor", "--quick", "--json", "--factory", f)
    assert code == 1
    endpoint = rows(out)["model endpoint"]
    assert endpoint["status"] == "fail"
    assert endpoint["detail"].startswith(f"cannot reach {api.base_url}: APIConnectionError")
    assert "ANTHROPIC_BASE_URL" in endpoint["fix"]
    assert FAKE_KEY not in out + err
    # the table says the same to a person
    code, out, _ = cli(capsys, "doctor", "--quick", "--factory", f)
    assert code == 1 and "FIX   model endpoint" in out and "fix: check the network" in out and "1 to fix." in out


def test_doctor_names_the_missing_key_in_api_mode_and_the_scripted_model_otherwise(factory, capsys):
    f, _ = factory
    code, out, _ = cli(capsys, "doctor", "--quick", "--json", "--factory", f)
    assert code == 1
    checks = rows(out)
    assert checks["API key"]["status"] == "fail" and "export ANTHROPIC_API_KEY" in checks["API key"]["fix"]
    assert checks["model endpoint"]["status"] == "skip"
    set_mode(f, "auto")
    code, out, _ = cli(capsys, "doctor", "--quick", "--json", "--factory", f)
    assert code == 0, out
    checks = rows(out)
    assert "the scripted model is used" in checks["API key"]["detail"]
    assert checks["model claude-sonnet-5-5"]["detail"].startswith("reachable at the scripted model (offline)")


def test_doctor_reports_products_store_and_factory_problems(factory, capsys):
    f, repo = factory
    set_mode(f, "scripted")
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")  # uncommitted: product not usable
    store = f.parent / "memory" / "cockpit.db"
    con = sqlite3.connect(store)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    code, out, _ = cli(capsys, "doctor", "--json", "--factory", f)
    assert code == 1
    checks = rows(out)
    assert checks["product calc"]["status"] == "fail" and "uncommitted changes" in checks["product calc"]["detail"]
    assert "product calc tests" not in checks
    assert checks["store"]["status"] == "fail" and checks["store"]["fix"] == "upgrade cockpit"

    subprocess.run(["git", "checkout", "--", "calc.py"], cwd=repo, check=True)
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "red"], cwd=repo, check=True)
    store.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    code, out, _ = cli(capsys, "doctor", "--json", "--factory", f)
    checks = rows(out)
    assert code == 1
    assert checks["product calc"]["status"] == "ok"
    tests = checks["product calc tests"]
    assert tests["status"] == "fail" and "failed with exit code 1" in tests["detail"] and "1 failed" in tests["detail"]
    assert checks["store"]["status"] == "fail"

    f.write_text(f.read_text().replace("# max_agents = 6", "max_agents = 0"))
    code, out, _ = cli(capsys, "doctor", "--factory", f)
    assert code == 1 and "FIX   factory file" in out and f"{f}:" in out and "key 'limits.max_agents'" in out


def test_with_a_key_run_uses_the_api_transport_and_the_key_lands_nowhere(factory, api, capsys, caplog):
    """The same headless run as offline, through ANTHROPIC_BASE_URL: the task merges, and the key is in
    no store byte, no log record, no agent environment (the builder runs `env`) and nothing the model saw."""
    f, repo = factory
    # model names go to the API exactly as factory.toml writes them (an alias here)
    edit_factory(f, lambda doc: doc["roles"]["reviewer"].__setitem__("model", "claude-haiku-4-5"))
    scenario = f.parent / "scenarios" / "calc.toml"
    shutil.copy(SCENARIOS / "calc_multiply.toml", scenario)
    api.model.scripts = ScriptedModel.from_paths([scenario]).scripts
    caplog.set_level(logging.DEBUG)
    code, out, _ = cli(capsys, "task", "add", "calc", "Add multiply", "--factory", f)
    task_id = out.strip()
    code, out, err = cli(capsys, "run", "--headless", "--timeout", "100", "--factory", f)
    assert code == 0 and f"{task_id}    done" in out, out + err
    assert "def multiply" in (repo / "calc.py").read_text()

    # the model was the 127.0.0.1 server, reached as the API: every call, builder and reviewer
    assert {r["model"] for r in api.requests} == {"claude-sonnet-5-5", "claude-haiku-4-5"}
    assert len(api.requests) >= 6 and all(r.get("stream") for r in api.requests)
    seen = json.dumps(api.requests)
    assert "PATH=" in seen and "HOME=/tmp/home" in seen, "the builder's `env` output reached the model"
    assert FAKE_KEY not in seen and "ANTHROPIC" not in seen

    for p in f.parent.rglob("*"):
        if p.is_file():
            assert FAKE_KEY.encode() not in p.read_bytes(), p
    history = subprocess.run(["git", "log", "-p", "--all"], cwd=repo, capture_output=True, text=True).stdout
    assert "multiply" in history and FAKE_KEY not in history
    assert any(r.name.startswith("anthropic") for r in caplog.records), "the SDK's debug log was captured"
    assert FAKE_KEY not in caplog.text and FAKE_KEY not in out + err


def test_api_client_timeouts_and_retries_are_the_factorys(factory, api):
    f, _ = factory
    edit_factory(f, lambda doc: (doc["model"].__setitem__("timeout_s", 90), doc["model"].__setitem__("max_retries", 3)))
    mc = make_client(load_factory(f))
    try:
        assert mc.mode == "api" and str(mc.client.base_url).rstrip("/") == api.base_url
        assert mc.client.max_retries == 3
        t = mc.client.timeout
        assert (t.connect, t.read, t.write, t.pool) == (10.0, 90, 90, 90)
    finally:
        asyncio.run(mc.close())
