"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) on the code as it
is, and on a copy with one upward import added, which must fail them (a contract that cannot fail
checks nothing)."""

from __future__ import annotations

import ast
import os
import re
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


def nodes_outside(package: Path, sub: str):
    """(path, node) for every syntax node of the modules of `package` that are not under `package/sub`."""
    for path in sorted(package.rglob("*.py")):
        if (package / sub) not in path.parents:
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                yield path, node


def argparse_users(package: Path) -> list[str]:
    """Modules of `package` outside cockpit/cli/ that import argparse (the command line's business only)."""
    found = []
    for path, node in nodes_outside(package, "cli"):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == "argparse" or n.startswith("argparse.") for n in names):
            found.append(str(path.relative_to(package.parent)))
    return found


def test_only_the_command_line_parses_arguments(tmp_path):
    assert argparse_users(REPO / "cockpit") == []
    # the scan finds one when there is one (in a function, where a grep for a top-level import would miss it)
    copy = tmp_path / "cockpit"
    shutil.copytree(REPO / "cockpit", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "factory" / "gates.py").write_text((copy / "factory" / "gates.py").read_text()
                                               + "\n\ndef _flags():\n    import argparse\n\n    return argparse\n")
    assert argparse_users(copy) == ["cockpit/factory/gates.py"]


def test_nothing_below_the_command_line_imports_it(tmp_path):
    copy = copy_of_the_code(tmp_path)
    gates = copy / "cockpit" / "factory" / "gates.py"
    lazy = "\n\ndef _cli():\n    from ..cli.store_access import with_store\n\n    return with_store\n"
    gates.write_text(gates.read_text() + lazy)
    r = lint_imports(copy)
    assert r.returncode != 0, r.stdout
    assert "cockpit.factory is not allowed to import cockpit.cli" in r.stdout, r.stdout


def test_the_cycles_that_were_in_factory_and_tui_break_the_contract_if_put_back(tmp_path):
    # recovery.py named the Orchestrator and palette.py the CockpitApp (each only for a type), and the screens
    # shared a base class with tui/actions.py that imported two of them: each one, put back, fails the contract
    copy = copy_of_the_code(tmp_path)
    back = {
        "cockpit.factory": ("factory/recovery.py", "\nfrom .orchestrator import Orchestrator  # noqa: E402,F401\n"),
        "cockpit.tui": ("tui/palette.py", "\nif TYPE_CHECKING:\n    from .app import CockpitApp  # noqa: F401\n"),
        "cockpit.tui.screens": ("tui/screens/prompt.py",
                                "\n\ndef _edit():\n    from .task_actions import TaskActions\n\n    return TaskActions\n"),
    }
    for package, (module, line) in back.items():
        path = copy / "cockpit" / module
        before = path.read_text()
        path.write_text(before + line)
        r = lint_imports(copy)
        path.write_text(before)
        assert r.returncode != 0, (package, r.stdout)
        assert f"No cycles are allowed in {package}" in r.stdout, r.stdout


SQL = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|WITH)\s")


def sql_outside_the_store(package: Path) -> list[str]:
    """Places outside cockpit/store/ that write SQL (a string that starts like a statement, f-strings included)
    or open SQLite themselves: the store's named reads and writes are the way in."""
    found = []
    for path, node in nodes_outside(package, "store"):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value)
        opens = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
                 and isinstance(node.func.value, ast.Name) and node.func.value.id == "sqlite3")
        if (text is not None and SQL.match(text)) or opens:
            found.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    return sorted(set(found), key=lambda f: (f.split(":")[0], int(f.split(":")[1])))


def test_only_the_store_speaks_sql(tmp_path):
    assert sql_outside_the_store(REPO / "cockpit") == []
    copy = tmp_path / "cockpit"
    shutil.copytree(REPO / "cockpit", copy, ignore=shutil.ignore_patterns("__pycache__"))
    meter = copy / "factory" / "meter.py"
    meter.write_text(meter.read_text() + '\n\nasync def _raw(store):\n    return await store.query(f"SELECT {1}")\n\n\n'
                     'WRITE = ("UPDATE outbox SET state = ?", ())\n\n\n'
                     'def _open(p):\n    import sqlite3\n\n    return sqlite3.connect(p)\n')
    lines = meter.read_text().splitlines()
    where = [i + 1 for i, line in enumerate(lines) if "SELECT {1}" in line or "UPDATE outbox" in line
             or "sqlite3.connect" in line]
    assert sql_outside_the_store(copy) == [f"cockpit/factory/meter.py:{n}" for n in where] and len(where) == 3
