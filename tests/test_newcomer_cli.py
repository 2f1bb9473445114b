"""What a newcomer types first (issue 20, point 9): `--factory DIR`, a misspelt model name, `init`'s budget.

Real parts: the real command line (`cockpit.cli.main`) on factories written by `cockpit init`.
"""

from __future__ import annotations

import json
import tomllib

import pytest

from cockpit.cli import main as cli
from cockpit.config import ConfigError, closest_models, load_factory
from cockpit.domain.prices import default_prices
from cockpit.cli.init import PROPOSED_DAY_USD


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_factory_accepts_the_folder(tmp_path, capsys):
    """`--factory DIR` means DIR/factory.toml; a folder without one says so and how to make one."""
    home = tmp_path / "factory"
    assert run(capsys, "init", str(home))[0] == 0
    code, out, err = run(capsys, "status", "--json", "--factory", str(home))
    assert code == 0, err
    assert json.loads(out)["products"] == []
    code, out, err = run(capsys, "task", "add", "shop", "x", "--factory", str(home))
    assert code == 1 and "no product 'shop'" in err and "Is a directory" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "status", "--factory", str(empty))
    assert code == 2 and "Is a directory" not in err
    assert f"{empty}: a folder without a factory.toml" in err and f"cockpit init {empty}" in err
    assert load_factory(home).path == home / "factory.toml"


def test_an_unknown_model_lists_the_known_ones_closest_first(tmp_path, capsys):
    home = tmp_path / "factory"
    assert run(capsys, "init", str(home))[0] == 0
    f = home / "factory.toml"
    text = f.read_text()
    at = text.index("[roles.builder]\n")
    f.write_text(text.replace('# model = "claude-sonnet-5-5"', 'model = "claude-sonet-4-5"', 1) if
                 text.index('# model = "claude-sonnet-5-5"') > at else None)
    code, _, err = run(capsys, "status", "--factory", str(f))
    assert code == 2
    assert "roles.builder.model" in err and "'claude-sonet-4-5'" in err
    listed = err.split("Known models, closest first: ")[1].strip().split(", ")
    assert listed[0] == "claude-sonnet-4-5", listed[:3]
    assert sorted(listed) == sorted(default_prices().models), "every known model is listed"
    with pytest.raises(ConfigError, match="closest first: claude-opus-4-6"):
        f.write_text(f.read_text().replace("claude-sonet-4-5", "claude-opus-4.6"))
        load_factory(f)
    assert closest_models("gpt-4o", ["claude-sonnet-4-5", "claude-opus-4-6"])  # nothing close: still every name


def test_init_proposes_a_daily_budget(tmp_path, capsys):
    home = tmp_path / "a"
    code, out, _ = run(capsys, "init", str(home))
    assert code == 0 and f"daily budget: ${PROPOSED_DAY_USD:.2f}" in out
    config = load_factory(home)
    assert config.budgets.day_usd == PROPOSED_DAY_USD == config.budget_limits().day_usd
    assert tomllib.loads((home / "factory.toml").read_text())["budgets"]["day_usd"] == PROPOSED_DAY_USD
    code, out, _ = run(capsys, "init", str(tmp_path / "b"), "--day-budget", "5")
    assert code == 0 and load_factory(tmp_path / "b").budgets.day_usd == 5.0 and "$5.00" in out
    code, out, _ = run(capsys, "init", str(tmp_path / "c"), "--day-budget", "none")
    assert code == 0 and load_factory(tmp_path / "c").budgets.day_usd is None and "daily budget: none" in out
    with pytest.raises(SystemExit):
        cli(["init", str(tmp_path / "d"), "--day-budget", "lots"])
    assert "not an amount" in capsys.readouterr().err
