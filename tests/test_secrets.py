"""The API key never lands anywhere: not in the store, its WAL, a log, a transcript, a worktree, git, or a sandbox.

The demo runs headless as a real subprocess with a recognisable fake ANTHROPIC_API_KEY in
its environment, once with [model] mode = "scripted" (the key is ignored) and once with
mode = "api" against a scripted server on 127.0.0.1 through ANTHROPIC_BASE_URL (the key is
really sent, as to the real API). An extra task's builder dumps every environment it can
see into a committed file. Then every byte under the factory directory is scanned, git
objects decompressed, with the process's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cockpit.agents.faults import FaultInjector
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer
from cockpit.config import load_factory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.crash import new_generation, read_store  # noqa: E402

FAKE_KEY = "sk-ant-api03-SECRETSCAN-7f3a9c1e5b2d4f6a8c0e-FAKE"
MARKERS = [FAKE_KEY.encode(), b"SECRETSCAN-7f3a9c1e5b2d4f6a8c0e"]

DUMP_SCENARIO = """
[[script]]
name = "builder: dump the environment"
role = "builder"
match = ["Dump every environment"]
[[script.turns]]
text = "Collecting every environment I can see."
[[script.turns.tool_use]]
name = "run_command"
input = { command = "env > seen_env.txt; cat /proc/[0-9]*/environ | tr '\\\\0' '\\\\n' >> seen_env.txt; wc -l < seen_env.txt" }
[[script.turns]]
[[script.turns.tool_use]]
name = "read_file"
input = { path = "seen_env.txt" }
[[script.turns]]
[[script.turns.tool_use]]
name = "commit"
input = { message = "What the sandbox sees" }
[[script.turns]]
[[script.turns.tool_use]]
name = "submit"
input = { note = "env dump" }
"""


def _scan(root: Path, extra: list[bytes]) -> list[str]:
    """Where any marker occurs: every file's raw bytes, every git object's content, and `extra`."""
    hits = []
    for f in root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            data = f.read_bytes()
            if any(m in data for m in MARKERS):
                hits.append(str(f))
    for git_dir in root.rglob(".git"):
        if not git_dir.is_dir():
            continue
        out = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=git_dir.parent,
                             capture_output=True, check=True).stdout
        assert out, f"no git objects read in {git_dir}"
        if any(m in out for m in MARKERS):
            hits.append(f"git objects of {git_dir.parent}")
    for i, blob in enumerate(extra):
        if any(m in blob for m in MARKERS):
            hits.append(f"process output #{i}")
    return hits


@pytest.mark.parametrize("mode", ["scripted", "api"])
def test_the_key_is_never_written(tmp_path, mode):
    factory = new_generation(tmp_path, 0, tasks=1)  # the demo factory with its first task (shop)
    root = factory.parent
    (root / "scenarios" / "zz_env_dump.toml").write_text(DUMP_SCENARIO)
    if mode == "api":
        factory.write_text(factory.read_text().replace('mode = "scripted"', 'mode = "api"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "COCKPIT_"))}
    env["ANTHROPIC_API_KEY"] = FAKE_KEY
    server = None
    try:
        if mode == "api":
            cfg = load_factory(factory)
            server = ScriptedModelServer(ScriptedModel.from_paths([cfg.scenarios_path]))
            server.faults = FaultInjector()  # no faults queued: it only records which keys arrived
            env["ANTHROPIC_BASE_URL"] = server.start()
        cli = [sys.executable, "-m", "cockpit"]
        # on another product than T1's: two tasks of one repo starting at once can race in git (reported)
        add = subprocess.run([*cli, "task", "add", "weather", "Dump every environment", "--factory", str(factory)],
                             env=env, capture_output=True, timeout=120)
        assert add.returncode == 0, add.stderr
        run = subprocess.run([*cli, "run", "--headless", "--factory", str(factory), "--timeout", "240"],
                             env=env, capture_output=True, timeout=300)
        assert run.returncode in (0, 3), run.stderr.decode()[-3000:]  # 3: a task waits for the human
        if server is not None:
            assert server.faults.api_keys_seen == {FAKE_KEY}  # the key really was in use, sent to the API
            assert server.faults.requests_seen > 5
    finally:
        if server is not None:
            server.stop()

    snap = read_store(root / "memory" / "cockpit.db")
    dump = next(t for t in snap.tasks.values() if t.title == "Dump every environment")
    assert dump.commit is not None, (dump.state, dump.blocked_by, dump.block_detail)  # the dump ran and was committed
    seen = subprocess.run(["git", "show", f"{dump.commit}:seen_env.txt"], cwd=root / "products" / "weather",
                          capture_output=True, text=True, check=True).stdout
    assert "HOME=/tmp/home" in seen and "ANTHROPIC" not in seen
    assert any(e[2] == "agent.tool_result" for e in snap.events) and len(snap.ledger) > 5
    assert _scan(root, [add.stdout, add.stderr, run.stdout, run.stderr]) == []
