"""Bad input at start-up or on the way: a clear error naming the file and the fix, the right exit, nothing lost.

Each case is a real file (factory.toml, a product repo, a rule, the store) broken the way
people break them, then `cockpit run --headless` (in-process through cli.main, which is
what the console script calls) or the store itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import anthropic
import pytest
from factory_kit import write_factory
from gitrepo import make_repo

from cockpit.agents.client import ModelClient
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
from cockpit.cli import main
from cockpit.config import load_factory
from cockpit.domain import Event, Kind
from cockpit.factory import commands
from cockpit.factory.orchestrator import Orchestrator
from cockpit.store import Store, StoreError


def run(factory: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["run", "--headless", "--factory", str(factory), "--timeout", "60", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


# --- factory.toml ------------------------------------------------------------------------


def test_malformed_toml_names_the_line(tmp_path, capsys):
    f = write_factory(tmp_path)
    f.write_text(f.read_text().replace('name = "t"', 'name = "t'))
    code, _, err = run(f, capsys)
    assert code == 2 and err.startswith(f"cockpit: {f}: not valid TOML:") and "Fix the syntax at that line" in err
    assert not (tmp_path / "memory").exists()


def test_unknown_key_names_file_line_key_and_fix(tmp_path, capsys):
    f = write_factory(tmp_path)
    f.write_text(f.read_text().replace("max_rounds = 2", "max_rounds = 2\nmax_round = 3"))
    code, _, err = run(f, capsys)
    assert code == 2
    assert f"{f}:4: unknown key 'factory.max_round'. Remove it or check its spelling" in err
    assert not (tmp_path / "memory").exists()


def test_wrong_type_names_the_key(tmp_path, capsys):
    f = write_factory(tmp_path)
    f.write_text(f.read_text().replace("max_rounds = 2", 'max_rounds = "two"'))
    code, _, err = run(f, capsys)
    assert code == 2 and "key 'factory.max_rounds'" in err and "Fix the value" in err


# --- product repos -----------------------------------------------------------------------


def test_missing_product_path_stops_the_start(tmp_path, capsys):
    f = write_factory(tmp_path)
    f.write_text(f.read_text().replace('path = "products/shop"', 'path = "products/gone"'))
    code, _, err = run(f, capsys)
    no_traceback(err)
    assert code == 2
    assert f"{f}:" in err and "product 'shop'" in err and f"{tmp_path / 'products' / 'gone'}: no such directory" in err
    assert "Fix products[0].path (or main_branch)" in err
    assert not (tmp_path / "memory").exists(), "nothing may be written when the start stops"


def test_product_path_that_is_not_a_git_repo_stops_the_start(tmp_path, capsys):
    f = write_factory(tmp_path)
    (tmp_path / "plain").mkdir()
    f.write_text(f.read_text().replace('path = "products/shop"', 'path = "plain"'))
    code, _, err = run(f, capsys)
    no_traceback(err)
    assert code == 2 and f"{tmp_path / 'plain'} is not a git repository: run 'git init -b main' there" in err


def test_missing_main_branch_stops_the_start(tmp_path, capsys):
    make_repo(tmp_path / "products" / "shop", branch="trunk")
    f = write_factory(tmp_path)
    code, _, err = run(f, capsys)
    assert code == 2 and "no branch 'main' with a commit (branches: trunk)" in err


def test_uncommitted_changes_warn_and_the_factory_still_runs(tmp_path, capsys):
    f = write_factory(tmp_path)
    (tmp_path / "products" / "shop" / "calc.py").write_text("# edited by hand\n")
    code, out, err = run(f, capsys)
    assert code == 0, err
    assert "warning: product 'shop'" in err and "has uncommitted changes to tracked files" in err
    assert "Commit or stash them" in err
    assert (tmp_path / "products" / "shop" / "calc.py").read_text() == "# edited by hand\n"  # untouched


def test_a_second_product_problem_is_reported_with_the_first(tmp_path, capsys):
    f = write_factory(tmp_path, products=("shop", "ledger"))
    f.write_text(f.read_text().replace('path = "products/shop"', 'path = "nope1"')
                 .replace('path = "products/ledger"', 'path = "nope2"'))
    code, _, err = run(f, capsys)
    assert code == 2 and "nope1: no such directory" in err and "nope2: no such directory" in err


# --- rules -------------------------------------------------------------------------------


def test_a_rule_with_broken_front_matter_does_not_crash_the_start(tmp_path, capsys):
    f = write_factory(tmp_path)
    bad = tmp_path / "rules" / "broken.md"
    bad.write_text("---\napplies_to: [builder\nroles: : :\n---\nNever do this.\n")
    code, _, err = run(f, capsys)
    no_traceback(err)
    assert code in (0, 2), err
    if code == 2:  # refusing is fine, if it says which file
        assert "broken.md" in err


# --- the store ---------------------------------------------------------------------------


async def _recorded(f: Path) -> Path:
    cfg = load_factory(f)
    store = await Store.open(cfg.store_path)
    await commands.add_task(store, product="shop", title="Keep me")
    await store.close()
    return cfg.store_path


def test_corrupt_store_is_refused_untouched(tmp_path, capsys):
    f = write_factory(tmp_path)
    db = tmp_path / "memory" / "cockpit.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not sqlite at all" * 100)
    before = digest(db)
    code, _, err = run(f, capsys)
    no_traceback(err)
    assert code == 2 and f"{db}: not a SQLite database (corrupt or another file). Move it aside" in err
    assert digest(db) == before


def test_store_damaged_inside_is_refused_untouched(tmp_path, capsys):
    f = write_factory(tmp_path)
    db = asyncio.run(_recorded(f))
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the header magic survives, the schema page does not
    db.write_bytes(bytes(data))
    before = digest(db)
    code, _, err = run(f, capsys)
    no_traceback(err)
    assert code == 2 and f"{db}: cannot open the store" in err and "move it aside" in err
    assert digest(db) == before


def test_store_from_a_newer_cockpit_is_refused_untouched(tmp_path, capsys):
    f = write_factory(tmp_path)
    db = asyncio.run(_recorded(f))
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 999")
    con.close()
    before = digest(db)
    code, _, err = run(f, capsys)
    assert code == 2 and f"{db}: schema version 999 is newer than this cockpit understands" in err
    assert "Upgrade cockpit; the file was not touched" in err
    assert digest(db) == before


async def test_a_full_disk_fails_the_write_and_loses_nothing(tmp_path):
    db = tmp_path / "cockpit.db"
    store = await Store.open(db)
    kept = [await store.append(Event(kind=Kind.NOTE, actor="system", data={"text": f"kept {i}"})) for i in range(20)]
    (pages,) = (await store.query("PRAGMA page_count"))[0]
    await store._w.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from here on
    with pytest.raises(StoreError) as info:
        for i in range(200):
            await store.append(Event(kind=Kind.NOTE, actor="system", data={"text": "x" * 2000, "i": i}))
    msg = str(info.value)
    assert msg.startswith(f"{db}: write failed (database or disk is full)")
    assert "Free some disk space, then restart the cockpit." in msg
    await store.close()
    again = await Store.open(db)
    events = await again.events()
    assert [e.data["text"] for e in events[:20]] == [e.data["text"] for e in kept]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    nxt = await again.append(Event(kind=Kind.NOTE, actor="system", data={"text": "after"}))
    assert nxt.id == len(events) + 1
    await again.close()


async def test_a_full_disk_stops_the_factory_with_the_error(tmp_path):
    """The orchestrator must stop on a store it cannot write, not spin or block tasks it cannot record."""
    cfg = load_factory(write_factory(tmp_path))
    store = await Store.open(cfg.store_path)
    task = (await commands.add_task(store, product="shop", title="Anything")).task_id
    (pages,) = (await store.query("PRAGMA page_count"))[0]
    await store._w.execute(f"PRAGMA max_page_count = {pages}")
    failed = 0
    for size in [2000] * 50 + [200] * 100 + [1] * 200:  # fill what room the last pages had
        try:
            await store.append(Event(kind=Kind.NOTE, actor="system", data={"pad": "x" * size}))
        except StoreError:
            failed += 1
    assert failed > 100
    with ScriptedModelServer(ScriptedModel([])) as server:
        client = anthropic.AsyncAnthropic(api_key="x", base_url=server.base_url, max_retries=0)
        orch = Orchestrator(cfg, store, ModelClient(client, "scripted"))
        with pytest.raises(StoreError, match="database or disk is full"):
            await asyncio.wait_for(orch.run(until_idle=True, timeout=60), 90)
        await client.close()
    await store.close()
    again = await Store.open(cfg.store_path)
    assert again.task(task) is not None and again.task(task).title == "Anything"
    await again.close()


def test_a_second_cockpit_on_the_same_factory_is_refused(tmp_path, capsys):
    """Recovery takes in-flight reservations for orphans: only one process may drive a factory."""
    import subprocess
    import sys

    f = write_factory(tmp_path)
    db = tmp_path / "memory" / "cockpit.db"
    db.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cockpit.factory.recovery import acquire_run_lock; "
                               f"acquire_run_lock({str(db)!r}); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run(f, capsys)
        assert code == 2
        assert f"{db}: another cockpit (pid {holder.pid}) is running this factory" in err
    finally:
        holder.kill()
        holder.wait()
