"""The bundled demo factory: five small products that are real git repos with real pytest suites.

`write_demo(dir)` writes factory.toml, rules/, memory/, scenarios/ and the
products, then queues the demo tasks through the store, the same way a human
adding them would. Runs before the event loop starts, so plain subprocesses are fine.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from ..config import default_rules_dir
from ..factory.commands import add_task
from ..host import safe_git
from ..store import Store

DEMO_TASKS: list[tuple[str, str, str]] = [
    ("shop", "Add CSV export of orders",
     "Finance wants the orders as CSV: one header row (id, customer, total), one row per order, totals "
     "with two decimals, commas in customer names quoted. Add shop.export.to_csv(orders) -> str with tests."),
    ("ledger", "Round invoice totals to cents",
     "ledger.invoice.total() must return the total rounded half-up to whole cents (2.675 -> 2.68), as our "
     "accountant does by hand. Add a test for a half-cent line."),
    ("weather", "Add Fahrenheit conversions",
     "Add weather.units.c_to_f and f_to_c, with tests for known points and a round trip."),
    # a pair worked at the same time that each pass alone and break main together: the merge queue
    # tests the exact merge result, so the second to land goes back to its builder
    ("inventory", "Rename count_items to total_quantity",
     "count_items reads badly in reports; rename it to total_quantity everywhere."),
    ("inventory", "Add a low-stock report",
     "Add inventory.report.low_stock(stock, threshold=5) -> str listing kinds below the threshold, then the total."),
    # memory: the first fails the tests gate for a reason of this product's own (naive datetimes), and
    # its builder records the lesson; the second (journal is serial: it starts after) is given that
    # lesson in its prompt and passes first time (scenarios/journal.toml)
    ("journal", "Stamp entries with their creation time",
     "Entry gets created_at, set by new_entry() to the moment the entry is made. Add a test."),
    ("journal", "Record when an entry was last edited",
     "Add journal.entries.edit(entry, body): replace the body and set entry.updated_at to the timestamp of the "
     "edit. Add a test."),
    # the team (scenarios/shop_discounts.toml, weather_team.toml): the breaker finds a defect the reviewer
    # missed and the builder fixes it (after trying to approve its own fix); a reviewer requests changes;
    # a builder deletes the test its change breaks and the task blocks for the human ("tests removed")
    ("shop", "Add order discounts",
     "Add shop.discount.apply_discount(total, percent) -> float: the total after taking percent off, to the cent."),
    ("weather", "Add a wind chill formula",
     "Add weather.wind.wind_chill(temp_c, wind_kmh) using the Environment Canada formula, rounded to 0.1, tested."),
    ("weather", "Round Kelvin to one decimal",
     "Displays show too many digits: make weather.units.c_to_k round to one decimal."),
]

# per-product lines added to PRODUCT_TOML
PRODUCT_EXTRA: dict[str, str] = {
    "journal": "serial = true  # one task at a time: each starts from what the last one taught\n",
}

FACTORY_TOML = """\
# The Cockpit demo factory, written by `cockpit demo`. Every key is explained in the README.
[factory]
name = "demo"
store = "memory/cockpit.db"
worktrees = "worktrees"
rules = "rules"
max_rounds = 2
human = "human:you"

[model]
# the scripted model plays scenarios/ offline; no API key is needed or used
mode = "scripted"
scenarios = "scenarios"
chunk_delay_s = {chunk_delay}

[limits]
max_agents = 6
max_agents_per_product = 2
agent_max_turns = 30
command_timeout_s = 120
test_timeout_s = 300

[roles.builder]
model = "claude-sonnet-5-5"
max_tokens = 8192

[roles.reviewer]
model = "claude-opus-5-5"
max_tokens = 4096

[roles.breaker]
model = "claude-sonnet-5-5"
max_tokens = 4096

{products}
"""

PRODUCT_TOML = """\
[[products]]
name = "{name}"
path = "products/{name}"
# plugin autoload off: the demo suites need none, and it makes each run several times faster
test_command = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"
main_branch = "main"
budget_usd = 5.0
"""


def _demo_files() -> Path:
    return Path(str(resources.files("cockpit.demo")))


def _git(*args: str, cwd: Path) -> None:
    p = safe_git.run_sync(*args, cwd=cwd, env={"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@cockpit.local",
                                               "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@cockpit.local"})
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, ["git", *args], p.stdout, p.stderr)


def write_demo(directory: Path, *, chunk_delay_s: float = 0.0) -> Path:
    """Write a complete demo factory into `directory` (which must be empty or absent)."""
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: give an empty or new directory to --dir")
    directory.mkdir(parents=True, exist_ok=True)
    src = _demo_files()
    shutil.copytree(default_rules_dir(), directory / "rules")
    shutil.copytree(src / "scenarios", directory / "scenarios")
    (directory / "memory").mkdir()
    products = []
    for name in sorted({p for p, _, _ in DEMO_TASKS}):
        dest = directory / "products" / name
        shutil.copytree(src / "products" / name, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (dest / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
        _git("init", "-q", "-b", "main", cwd=dest)
        _git("add", "-A", cwd=dest)
        _git("commit", "-q", "-m", f"Initial {name}", cwd=dest)
        products.append(PRODUCT_TOML.format(name=name) + PRODUCT_EXTRA.get(name, ""))
    factory = directory / "factory.toml"
    factory.write_text(FACTORY_TOML.format(chunk_delay=chunk_delay_s, products="\n".join(products)))
    return factory


async def queue_demo_tasks(store: Store, actor: str = "human:you") -> None:
    for product, title, body in DEMO_TASKS:
        await add_task(store, product=product, title=title, body=body, actor=actor)


def build_demo(directory: Path, *, chunk_delay_s: float = 0.0) -> Path:
    """Write the demo and queue its tasks; returns the factory.toml path."""
    from ..config import load_factory

    factory = write_demo(directory, chunk_delay_s=chunk_delay_s)
    cfg = load_factory(factory)

    async def _queue() -> None:
        from .history import seed_history

        store = await Store.open(cfg.store_path)
        try:
            # weeks of simulated, clearly marked history first (products history-*, tasks H*), so the
            # rate screen has trends to judge; the live tasks below keep their ids T1, T2, ...
            await seed_history(store, factory.parent / "products", human=cfg.factory.human)
            await queue_demo_tasks(store, cfg.factory.human)
        finally:
            await store.close()

    asyncio.run(_queue())
    return factory
