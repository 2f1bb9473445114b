"""The commit tool refuses compiled code: what runs must be the source a reviewer reads (workspaces.compiled_code).

The attack (adversary session B-07): a builder writes a backdoor, compiles it to an unchecked-hash .pyc (PEP 552:
Python never compares it with its source), puts an innocent source back and commits both. The reviewer's diff
shows a docstring and "Binary files differ"; every scan reads the innocent .py; `import calc` runs the backdoor.
Liveness: the same files committed by plain git, checked out fresh, run the backdoor. Variants: the .pyc in
__pycache__, a sourceless .pyc beside the package, an extension module, a .pyc modified on a later commit.
"""

from __future__ import annotations

import asyncio
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from cockpit.factory.workspaces import UnsafeChange, Workspaces, compiled_code
from gitrepo import make_repo, run_git

BACKDOOR = "def add(a, b):\n    return a + b\n\n\ndef check_password(pw):\n    return True\n"
INNOCENT = '"""Sums."""\n\n\ndef add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n'
TAG = sys.implementation.cache_tag


@pytest.fixture
def task(tmp_path):
    repo = make_repo(tmp_path / "repo", {"calc/__init__.py": "def add(a, b):\n    return a + b\n"})
    ws = Workspaces(tmp_path / "worktrees")
    wt = asyncio.run(ws.ensure("calc", repo, "main", "T1"))
    return {"root": tmp_path, "repo": repo, "ws": ws, "wt": wt}


def _plant(wt: Path, where: str) -> None:
    """The backdoor compiled (unchecked hash) to `where`, the innocent source in calc/__init__.py."""
    src = wt / "calc" / "__init__.py"
    src.write_text(BACKDOOR)
    target = wt / where
    target.parent.mkdir(parents=True, exist_ok=True)
    py_compile.compile(str(src), cfile=str(target), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    src.write_text(INNOCENT)
    if where == "calc.pyc":  # the sourceless variant: no package dir, only the .pyc
        (wt / "calc" / "__init__.py").unlink()
        (wt / "calc").rmdir()


def _backdoor_runs(wt: Path, dest: Path) -> bool:
    """Liveness: the worktree committed by plain git, cloned fresh, imported: does the backdoor answer?"""
    subprocess.run(["cp", "-a", str(wt), str(dest)], check=True)
    (dest / ".git").unlink()
    run_git(dest, "init", "-q")
    run_git(dest, "add", "-A")
    run_git(dest, "commit", "-qm", "liveness")
    clone = dest.with_name(dest.name + "-clone")
    subprocess.run(["git", "clone", "-q", str(dest), str(clone)], check=True)
    r = subprocess.run([sys.executable, "-c", "import calc; print(calc.check_password('wrong'))"], cwd=clone,
                       capture_output=True, text=True)
    return r.stdout.strip() == "True"


@pytest.mark.parametrize("where", [f"calc/__pycache__/__init__.{TAG}.pyc", "calc.pyc"])
def test_committed_bytecode_is_refused(task, where):
    wt, ws = task["wt"], task["ws"]
    _plant(wt, where)
    assert _backdoor_runs(wt, task["root"] / "probe")  # liveness: plain git lands it and it runs
    head = run_git(wt, "rev-parse", "HEAD")
    with pytest.raises(UnsafeChange, match="Python bytecode"):
        asyncio.run(ws.commit(wt, "docstring", "builder-1", main_branch="main"))
    assert run_git(wt, "rev-parse", "HEAD") == head
    assert run_git(wt, "diff", "--cached", "--name-only") == ""  # the index was reset


def test_an_extension_module_is_refused_and_plain_source_still_commits(task):
    wt, ws = task["wt"], task["ws"]
    (wt / "calc" / f"fast.{TAG}-x86_64-linux-gnu.so").write_bytes(b"\x7fELF" + b"\0" * 60)
    with pytest.raises(UnsafeChange, match="compiled extension module"):
        asyncio.run(ws.commit(wt, "speed", "builder-1", main_branch="main"))
    (wt / "calc" / f"fast.{TAG}-x86_64-linux-gnu.so").unlink()
    (wt / "calc" / "__init__.py").write_text(INNOCENT)
    assert asyncio.run(ws.commit(wt, "docstring", "builder-1", main_branch="main"))  # source alone: fine


def test_bytecode_changed_on_a_later_commit_is_refused_too(task):
    """Main already holds a .pyc (a human committed it): an agent may not change it either."""
    wt, ws, repo = task["wt"], task["ws"], task["repo"]
    (repo / "legacy.pyc").write_bytes(b"old")
    run_git(repo, "add", "legacy.pyc")
    run_git(repo, "commit", "-qm", "legacy bytecode")
    run_git(wt, "merge", "-q", "main")
    (wt / "legacy.pyc").write_bytes(b"new")
    with pytest.raises(UnsafeChange, match="legacy.pyc is Python bytecode"):
        asyncio.run(ws.commit(wt, "touch", "builder-1", main_branch="main"))
    (wt / "legacy.pyc").unlink()  # deleting it is fine
    assert asyncio.run(ws.commit(wt, "drop bytecode", "builder-1", main_branch="main"))


@pytest.mark.parametrize("path,kind", [("a/__pycache__/x.cpython-311.pyc", "Python bytecode"),
                                       ("a/__pycache__/notes.txt", "Python bytecode"), ("m.PYO", "Python bytecode"),
                                       ("lib/libz.so.1", "a compiled extension module"),
                                       ("x.pyd", "a compiled extension module"), ("calc/__init__.py", None),
                                       ("docs/so.md", None), ("setup.cfg", None)])
def test_what_counts_as_compiled(path, kind):
    assert compiled_code(path) == kind
