"""Test helpers: a small real factory (factory.toml, a product repo, rules, scenarios) in a directory.

Import what you need (`from factory_kit import write_factory`). Everything is real:
the product is a git repo with a passing pytest suite, the config is read by load_factory.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from gitrepo import make_repo

SCENARIOS = Path(__file__).parent / "scenarios"
"""Scenario files several tests play (e.g. notes_builder.toml): shared here, not pasted into each test."""

# Plugin autoload off: the sample suite needs none, and it halves the run time.
TEST_COMMAND = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"


def write_factory(root: Path, *, products: tuple[str, ...] = ("shop",), scenarios: str = "", mode: str = "scripted",
                  extra: str = "", limits: dict[str, float] | None = None, scenario_files: tuple[str, ...] = ()) -> Path:
    """factory.toml in `root` with one repo per product under root/products; returns its path.

    The scripted model plays `scenarios` (a test's own text) and `scenario_files` (names in tests/scenarios)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "rules").mkdir(exist_ok=True)
    (root / "rules" / "house.md").write_text("# House rules\nKeep changes small.\n")
    (root / "scenarios").mkdir(exist_ok=True)
    if scenarios:
        (root / "scenarios" / "test.toml").write_text(scenarios)
    for name in scenario_files:
        shutil.copy(SCENARIOS / name, root / "scenarios" / name)
    blocks = []
    for name in products:
        if not (root / "products" / name).exists():
            make_repo(root / "products" / name)
        blocks.append(f'[[products]]\nname = "{name}"\npath = "products/{name}"\n'
                      f'test_command = "{TEST_COMMAND}"\n')
    lim = {"command_timeout_s": 20, "test_timeout_s": 60, **(limits or {})}
    text = (f'[factory]\nname = "t"\nmax_rounds = 2\n{extra}\n'
            f'[model]\nmode = "{mode}"\nscenarios = "scenarios"\n\n'
            '[limits]\n' + "".join(f"{k} = {v}\n" for k, v in lim.items()) + "\n" + "\n".join(blocks))
    f = root / "factory.toml"
    f.write_text(text)
    return f


def write_plain_factory(root: Path, products: dict[str, str] | None = None, *, test_command: str = "true",
                        factory_extra: str = "", product_extra: str = "") -> Path:
    """factory.toml alone in `root`: a [factory] table and one [[products]] block per {name: path}, nothing
    else (no repo, rules or scenarios), for a test of the store, the command line or the screen, not of an
    agent. `factory_extra` and `product_extra` are TOML lines added to the factory table and each product."""
    root.mkdir(parents=True, exist_ok=True)
    blocks = [f"[[products]]\nname = {json.dumps(name)}\npath = {json.dumps(path)}\n"
              f"test_command = {json.dumps(test_command)}\n{product_extra}"
              for name, path in (products or {"shop": "shop"}).items()]
    f = root / "factory.toml"
    f.write_text(f'[factory]\nname = "t"\n{factory_extra}\n' + "\n".join(blocks))
    return f
