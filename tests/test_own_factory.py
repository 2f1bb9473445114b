"""Real use: `init` a factory, `product add` one's own git repository, `doctor`, and a headless run
that merges a task on it. Real git, real bwrap, real SQLite, the real SDK over the scripted model."""

import io
import json
import shutil
import subprocess
import sys

import pytest
from factory_kit import SCENARIOS
from gitrepo import commit_files, make_repo, run_git

from cockpit.cli import main
from cockpit.cli.init import factory_template
from cockpit.factory.products import guess_test_commands

FAST_PYTEST = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"


def cli(capsys, *args, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def offline(monkeypatch):
    """No key, no base URL: whatever the developer's shell has, the scripted model answers."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("COCKPIT_FACTORY", raising=False)


@pytest.mark.timeout(360)  # four real pytest runs in the sandbox: slow on a loaded 2-core machine
def test_init_product_add_doctor_then_a_headless_run_merges_on_my_repo(tmp_path, capsys, monkeypatch, offline):
    home = tmp_path / "factory"
    code, out, _ = cli(capsys, "init", home)
    assert code == 0, out
    f = home / "factory.toml"
    assert {p.name for p in (home / "rules").glob("*.md")} >= {"00-global.md", "10-builder.md"}
    assert (home / "memory" / ".gitkeep").exists() and (home / "scenarios").is_dir()
    assert f.read_text() == factory_template("factory")
    # init never overwrites without --force, and names what it refused to overwrite
    code, _, err = cli(capsys, "init", home)
    assert code == 2 and str(f) in err and "--force" in err

    repo = make_repo(tmp_path / "calc")  # calc.py and tests/test_calc.py, committed on main
    code, out, err = cli(capsys, "product", "add", repo, "--budget", "3", "--factory", f,
                         stdin="y\n", monkeypatch=monkeypatch)
    assert code == 0, out + err
    assert "test command: python -m pytest -q  (a tests/ directory" in out
    assert "passed in" in out and "1 passed" in out  # it ran once, in the sandbox, before asking
    assert f"added product calc to {f}" in out
    text = f.read_text()
    assert text.startswith(factory_template("factory").rstrip("\n")), "init's comments and order are kept"
    assert text.endswith(f'[[products]]\nname = "calc"\npath = "{repo}"\ntest_command = "python -m pytest -q"\n'
                         'main_branch = "main"\nbudget_usd = 3.0\n')

    code, out, _ = cli(capsys, "doctor", "--factory", f)
    assert code == 0, out
    for line in ("ok    git", "ok    sandbox", "ok    factory file", "ok    product calc ",
                 "ok    product calc tests", "ok    store", "ok    API key", "ok    model claude-"):
        assert line in out, (line, out)
    assert "the scripted model is used" in out and "All good." in out

    shutil.copy(SCENARIOS / "calc_multiply.toml", home / "scenarios" / "calc.toml")
    code, out, _ = cli(capsys, "task", "add", "calc", "Add multiply", "--body", "multiply(a, b) with a test",
                       "--factory", f)
    assert code == 0
    task_id = out.strip()
    code, out, _ = cli(capsys, "run", "--headless", "--timeout", "300", "--factory", f)
    assert code == 0 and f"{task_id}    done" in out, out

    code, out, _ = cli(capsys, "status", "--json", "--factory", f)
    (task,) = json.loads(out)["products"][0]["tasks"]
    assert task["state"] == "done"
    run_git(repo, "merge-base", "--is-ancestor", task["merged_commit"], "main")
    # main is checked out in the user's repository: the merge fast-forwarded it, files included
    assert "def multiply" in (repo / "calc.py").read_text()
    assert run_git(repo, "status", "--porcelain") == ""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=repo,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "2 passed" in r.stdout

    # remove keeps history: the entry goes, comments stay, the task is still in the store
    code, out, _ = cli(capsys, "product", "remove", "calc", "--factory", f)
    assert code == 0 and "its 1 tasks stay in the store" in out
    assert f.read_text().rstrip("\n") == factory_template("factory").rstrip("\n")
    code, out, _ = cli(capsys, "product", "list", "--json", "--factory", f)
    assert json.loads(out) == [{"name": "calc", "path": None, "main_branch": None, "test_command": None,
                                "budget_usd": None, "tasks": 1, "configured": False}]
    code, out, _ = cli(capsys, "status", "--json", "--factory", f)
    assert json.loads(out)["products"][0]["tasks"][0]["id"] == task_id


def test_init_force_rewrites_config_and_rules_but_never_the_store(tmp_path, capsys):
    home = tmp_path / "f"
    assert cli(capsys, "init", home)[0] == 0
    (home / "memory" / "cockpit.db").write_bytes(b"precious")
    (home / "rules" / "10-builder.md").write_text("edited")
    (home / "rules" / "99-mine.md").write_text("mine")
    code, _, err = cli(capsys, "init", home)
    assert code == 2 and "factory.toml already exists" in err
    (home / "factory.toml").unlink()
    code, _, err = cli(capsys, "init", home)  # the rules still clash
    assert code == 2 and str(home / "rules" / "00-global.md") in err
    assert cli(capsys, "init", home, "--force")[0] == 0
    assert (home / "memory" / "cockpit.db").read_bytes() == b"precious"
    assert (home / "rules" / "10-builder.md").read_text() != "edited"
    assert (home / "rules" / "99-mine.md").read_text() == "mine"


def test_product_add_refuses_what_the_factory_could_not_use(tmp_path, capsys, monkeypatch, offline):
    home = tmp_path / "f"
    cli(capsys, "init", home)
    f = home / "factory.toml"
    before = f.read_text()

    plain = tmp_path / "plain"
    plain.mkdir()
    code, _, err = cli(capsys, "product", "add", plain, "--yes", "--factory", f)
    assert code == 1 and "is not a git repository" in err

    repo = make_repo(tmp_path / "repo")
    code, _, err = cli(capsys, "product", "add", repo / "tests", "--yes", "--factory", f)
    assert code == 1 and f"give its top level, {repo}" in err
    code, _, err = cli(capsys, "product", "add", repo, "--branch", "trunk", "--yes", "--factory", f)
    assert code == 1 and "no branch 'trunk'" in err and "branches: main" in err

    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    code, _, err = cli(capsys, "product", "add", repo, "--yes", "--factory", f)
    assert code == 1 and "uncommitted changes to tracked files" in err and "calc.py" in err

    # committed, the change makes main red: the one run shows it and nothing is added
    run_git(repo, "commit", "-qam", "break add")
    code, out, err = cli(capsys, "product", "add", repo, "--test", FAST_PYTEST, "--yes", "--factory", f)
    assert code == 1 and "failed with exit code 1" in out and "1 failed" in out
    assert "does not pass on main" in err
    # asked instead of --yes: declining (or no answer at all) adds nothing either
    code, out, err = cli(capsys, "product", "add", repo, "--test", FAST_PYTEST, "--factory", f,
                         stdin="", monkeypatch=monkeypatch)
    assert code == 1 and "Add it anyway? [y/N]" in out
    assert f.read_text() == before
    assert run_git(repo, "worktree", "list").count("\n") == 0, "the scratch worktree is gone"

    # an explicit name and command, not run, then a duplicate is refused
    code, out, _ = cli(capsys, "product", "add", repo, "--name", "shop", "--test", "make check", "--no-run",
                       "--yes", "--factory", f)
    assert code == 0
    code, _, err = cli(capsys, "product", "add", repo, "--name", "shop", "--yes", "--factory", f)
    assert code == 1 and "already in" in err
    code, _, err = cli(capsys, "product", "remove", "nope", "--factory", f)
    assert code == 1 and "products: shop" in err


@pytest.mark.parametrize("files, expected", [
    ({"pyproject.toml": "[tool.pytest.ini_options]\n", "a.py": ""}, "python -m pytest -q"),
    ({"package.json": json.dumps({"scripts": {"test": "vitest run"}})}, "npm test"),
    ({"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})}, None),
    ({"Cargo.toml": "[package]\nname = 'x'\n"}, "cargo test --offline"),
    ({"go.mod": "module x\n"}, "go test ./..."),
    ({"Makefile": "build:\n\ttrue\n\ntest: build\n\tpytest\n"}, "make test"),
    ({"Makefile": "TEST := 1\nbuild:\n\ttrue\n"}, None),
])
async def test_guessing_the_test_command(tmp_path, files, expected):
    repo = make_repo(tmp_path / "r", files)
    guesses = await guess_test_commands(repo, "main")
    assert (guesses[0].command if guesses else None) == expected


async def test_the_guess_reads_the_branch_not_the_checkout(tmp_path):
    repo = make_repo(tmp_path / "r", {"README": "x"})
    run_git(repo, "checkout", "-qb", "other")
    commit_files(repo, {"go.mod": "module x\n"})
    assert await guess_test_commands(repo, "main") == []
    assert [g.command for g in await guess_test_commands(repo, "other")] == ["go test ./..."]
