"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) on the code as it
is, and on a copy with one upward import added, which must fail them (a contract that cannot fail
checks nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONSAFEPATH", None)
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_code_keeps_its_layers():
    r = lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout, r.stdout


def copy_of_the_code(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "pyproject.toml", copy)
    shutil.copytree(REPO / "cockpit", copy / "cockpit", ignore=shutil.ignore_patterns("__pycache__"))
    assert lint_imports(copy).returncode == 0  # the copy is as good as the original
    return copy


def test_an_upward_import_breaks_the_contract(tmp_path):
    copy = copy_of_the_code(tmp_path)
    # the domain reaching up into the store: the arrow the layers forbid
    tasks = copy / "cockpit" / "domain" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\nfrom cockpit.store import store as _upward  # noqa: E402,F401\n")
    r = lint_imports(copy)
    assert r.returncode != 0, r.stdout
    assert "cockpit.domain is not allowed to import cockpit.store" in r.stdout, r.stdout
    assert "cockpit.domain.tasks -> cockpit.store.store" in r.stdout, r.stdout


def test_a_run_time_import_cycle_between_siblings_breaks_the_contract(tmp_path):
    # scripted.py and prompt_cache.py used to import each other, one side inside a function (so Python never
    # complained); put that import back in a copy and the acyclic contract fails
    copy = copy_of_the_code(tmp_path)
    cache = copy / "cockpit" / "agents" / "prompt_cache.py"
    lazy = "\n\ndef _model():\n    from .scripted import ScriptedModel\n\n    return ScriptedModel\n"
    cache.write_text(cache.read_text() + lazy)
    r = lint_imports(copy)
    assert r.returncode != 0, r.stdout
    assert "No cycles are allowed in cockpit.agents" in r.stdout, r.stdout
