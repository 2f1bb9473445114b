"""Start-up checks that need more than the schema: the products' repositories, before anything opens.

A factory whose product path is missing, is not a git repository or has no main
branch would only fail later, task by task, deep inside git. So `cockpit run` checks
every product first and stops with one message naming factory.toml, the product,
what is wrong and the fix (exit 2, nothing written). A checkout with uncommitted
changes is only a warning: the factory can still build, and a merge that would run
over those changes is refused safely then.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ..config import ConfigError, FactoryConfig, _find_line
from ..factory.products import ProductError, check_repo

_DIRTY = "has uncommitted changes"


async def _problems(config: FactoryConfig) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    text = config.path.read_text(encoding="utf-8") if config.path and config.path.exists() else ""

    async def one(i: int) -> None:
        p = config.products[i]
        path = config.resolve(p.path)
        try:
            await check_repo(Path(path), p.main_branch)
        except ProductError as e:
            msg = str(e)
            if _DIRTY in msg:
                warnings.append(f"warning: product '{p.name}': {msg}")
                return
            line = _find_line(text, ("products", i, "path"))
            where = f"{config.path}:{line}" if line else str(config.path)
            errors.append(f"{where}: product '{p.name}': {msg}\n  Fix products[{i}].path (or main_branch) in "
                          f"{config.path}, or make {path} a git checkout with a commit on '{p.main_branch}'.")

    await asyncio.gather(*(one(i) for i in range(len(config.products))))
    order = {p.name: i for i, p in enumerate(config.products)}  # gather finishes in any order: report in file order
    key = lambda m: order.get(m.split("product '", 1)[-1].split("'", 1)[0], 0)  # noqa: E731
    return sorted(errors, key=key), sorted(warnings, key=key)


def preflight(config: FactoryConfig, warn=print) -> None:
    """Raise ConfigError listing every product that stops the start; `warn` the ones that do not."""
    errors, warnings = asyncio.run(_problems(config))
    for w in warnings:
        warn(w)
    if errors:
        raise ConfigError("\n".join(errors))
