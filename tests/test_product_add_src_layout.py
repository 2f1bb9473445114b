"""`product add` on a src-layout repository (issue 20, point 8): the first collection error whole, and the fix.

Real parts: a real git repository in a src layout (thirteen test files, like cachetools), `cockpit init` and
`cockpit product add` through the real command line, the test command run in the real sandbox.
"""

from __future__ import annotations

import io
import sys

import pytest

from cockpit.cli import main as cli
from cockpit.config import load_factory
from cockpit.factory.products import describe_result
from cockpit.host.sandbox import CommandResult
from cockpit.factory.test_failure import diagnose
from gitrepo import make_repo

N_TEST_FILES = 13


def src_layout_repo(path):
    files = {"pyproject.toml": '[project]\nname = "cachelib"\nversion = "0.1"\n',
             "src/cachelib/__init__.py": "def get(d, k):\n    return d.get(k)\n"}
    for i in range(N_TEST_FILES):
        files[f"tests/test_part{i:02d}.py"] = (f"from cachelib import get\n\n\ndef test_get_{i}():\n"
                                              f"    assert get({{{i}: 1}}, {i}) == 1\n")
    return make_repo(path, files)


def run(capsys, *argv, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def factory(tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.delenv("COCKPIT_FACTORY", raising=False)
    assert cli(["init", str(tmp_path / "fac")]) == 0
    capsys.readouterr()
    return str(tmp_path / "fac" / "factory.toml")


@pytest.mark.timeout(120)
def test_the_first_error_is_shown_whole_and_the_src_fix_is_tried(tmp_path, capsys, factory):
    repo = src_layout_repo(tmp_path / "cachelib")
    code, out, err = run(capsys, "product", "add", repo, "--yes", "--factory", factory)
    assert code == 1, out + err
    # the cause, which pytest's tail does not say: shown whole
    assert f"{N_TEST_FILES} errors during collection" in out
    assert "the first error, whole:" in out and "ERROR collecting tests/test_part00.py" in out
    assert "E   ModuleNotFoundError: No module named 'cachelib'" in out
    # the likely fixes, and the first one tried in the sandbox
    assert "which lives in src/ (a src layout)" in out and 'PYTHONPATH=src python -m pytest -q' in out
    assert "editable install" in out and "pip install -e ." in out
    assert "tried it: 'PYTHONPATH=src python -m pytest -q' passes" in out
    # --yes still refuses a red branch, and says the exact command that works
    assert f'cockpit product add {repo} --test "PYTHONPATH=src python -m pytest -q"' in err
    assert load_factory(factory).products == []


@pytest.mark.timeout(120)
def test_answering_yes_adopts_the_command_that_passed(tmp_path, capsys, factory, monkeypatch):
    repo = src_layout_repo(tmp_path / "cachelib")
    code, out, err = run(capsys, "product", "add", repo, "--factory", factory, stdin="y\n", monkeypatch=monkeypatch)
    assert code == 0, out + err
    (product,) = load_factory(factory).products
    assert product.test_command == "PYTHONPATH=src python -m pytest -q"


def test_without_the_diagnosis_the_tail_hides_the_cause():
    """Liveness: pytest's own tail (what `product add` printed before) names no cause; the diagnosis does."""
    header = "_" * 20 + " ERROR collecting tests/test_part{:02d}.py " + "_" * 20
    body = ("ImportError while importing test module 'tests/test_part{0:02d}.py'.\nTraceback:\n"
            "tests/test_part{0:02d}.py:1: in <module>\n    from cachelib import get\n"
            "E   ModuleNotFoundError: No module named 'cachelib'")
    output = "\n".join(f"{header.format(i)}\n{body.format(i)}" for i in range(N_TEST_FILES))
    output += ("\n" + "=" * 20 + " short test summary info " + "=" * 20 + "\n"
               + "\n".join(f"ERROR tests/test_part{i:02d}.py" for i in range(N_TEST_FILES))
               + f"\n!!!!! Interrupted: {N_TEST_FILES} errors during collection !!!!!\n{N_TEST_FILES} errors in 0.5s\n")
    tail = describe_result(CommandResult(command="python -m pytest -q", exit_code=2, output=output, truncated=False,
                                         timed_out=False, duration_s=0.5), tail_lines=15)
    assert "ModuleNotFoundError" not in tail
    d = diagnose(output, "python -m pytest -q", {"cachelib"})
    assert d.error.startswith(header.format(0)) and d.error.endswith("No module named 'cachelib'")
    assert d.module == "cachelib" and d.src_layout and d.fixed_command == "PYTHONPATH=src python -m pytest -q"
    # a dependency that is not the project's own: install it, or the project's interpreter; no src guess
    other = diagnose(output.replace("'cachelib'", "'requests'"), "python -m pytest -q", {"cachelib"})
    assert other.module == "requests" and not other.src_layout and other.fixed_command is None
    assert "project's own interpreter" in " ".join(other.advice())
