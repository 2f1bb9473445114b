"""Test helpers: a small real factory (factory.toml, a product repo, rules, scenarios) in a directory.

Import what you need (`from factory_kit import write_factory`). Everything is real:
the product is a git repo with a passing pytest suite, the config is read by load_factory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gitrepo import make_repo

# Plugin autoload off: the sample suite needs none, and it halves the run time.
TEST_COMMAND = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"


def write_factory(root: Path, *, products: tuple[str, ...] = ("shop",), scenarios: str = "", mode: str = "scripted",
                  extra: str = "", limits: dict[str, float] | None = None) -> Path:
    """factory.toml in `root` with one repo per product under root/products; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "rules").mkdir(exist_ok=True)
    (root / "rules" / "house.md").write_text("# House rules\nKeep changes small.\n")
    (root / "scenarios").mkdir(exist_ok=True)
    if scenarios:
        (root / "scenarios" / "test.toml").write_text(scenarios)
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
