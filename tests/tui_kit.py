"""Helpers for the cockpit's pilot and snapshot tests: a config, tasks built from the events agents and
gates would append, and ways to read the screen and wait for it.

Import what you need (`from tui_kit import blocked_task, until`). No mocks: a real store on a real
SQLite file; what is on screen is what the store folded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.css.query import NoMatches
from textual.pilot import Pilot

from cockpit.config import FactoryConfig, FactorySection, ProductConfig
from cockpit.domain import Event, Kind
from cockpit.factory import commands
from cockpit.store import Store

HUMAN = "human:you"


def make_config(root: Path | None = None, *, budgets: bool = True) -> FactoryConfig:
    """Two products (shop with a budget, blog without); `root` makes paths (rules, logs) real."""
    cfg = FactoryConfig(
        factory=FactorySection(name="acme", human=HUMAN),
        products=[
            ProductConfig(name="shop", path="shop", test_command="pytest -q", budget_usd=10 if budgets else None,
                          task_budget_usd=2 if budgets else None),
            ProductConfig(name="blog", path="blog", test_command="pytest -q"),
        ],
    )
    if root is not None:
        cfg = cfg.model_copy(update={"path": root / "factory.toml"})
    return cfg


async def new_task(store: Store, product: str, title: str, *, ts: float | None = None, body: str = "",
                   budget_usd: float | None = None) -> str:
    if ts is None:
        ev = await commands.add_task(store, product=product, title=title, body=body, actor=HUMAN, budget_usd=budget_usd)
        return ev.task_id
    data: dict = {"title": title, "body": body, "priority": 0}
    if budget_usd is not None:
        data["budget_usd"] = budget_usd
    return (await store.append(Event(kind=Kind.TASK_CREATED, actor=HUMAN, product=product, data=data, ts=ts))).task_id


async def append(store: Store, kind: str, actor: str, product: str | None, task_id: str | None, data: dict,
                 ts: float | None = None) -> Event:
    extra = {} if ts is None else {"ts": ts}
    return await store.append(Event(kind=kind, actor=actor, product=product, task_id=task_id, data=data, **extra))


async def start(store: Store, product: str, task_id: str, agent: str = "builder-1", ts: float | None = None) -> None:
    await append(store, Kind.TASK_STARTED, "system", product, task_id, {"agent": agent}, ts)
    await append(store, Kind.AGENT_STARTED, agent, product, task_id, {"role": agent.rsplit("-", 1)[0]}, ts)


async def blocked_task(store: Store, product: str = "shop", title: str = "Add CSV export", sha: str = "abc1234def",
                       *, ts: float | None = None, agent: str = "builder-1") -> str:
    """The path every blocked task takes: started, committed, submitted, tests failed, blocked."""
    t = await new_task(store, product, title, ts=ts)
    await start(store, product, t, agent, ts)
    steps = [
        (Kind.AGENT_TEXT, agent, {"text": "Reading the tests first.\nThe export needs quoting.\n"}),
        (Kind.AGENT_TOOL, agent, {"name": "write_file", "input": {"path": f"{product}/export.py"}}),
        (Kind.COMMITTED, agent, {"sha": sha}),
        (Kind.SUBMITTED, agent, {}),
        (Kind.AGENT_FINISHED, agent, {"reason": "called submit"}),
        (Kind.VERDICT, "system", {"gate": "tests", "commit": sha, "outcome": "fail", "detail": "3 failed"}),
        (Kind.BLOCKED, "system", {"reasons": ["tests"], "detail": "3 failed, 12 passed"}),
    ]
    for kind, actor, data in steps:
        await append(store, kind, actor, product, t, data, ts)
    return t


def screen_text(app) -> str:
    """What a person would read on the terminal right now."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def _holds(check: Callable[[], object]) -> bool:
    """A check that queries a widget still being composed has simply not happened yet."""
    try:
        return bool(check())
    except NoMatches:
        return False


async def until(pilot: Pilot, check: Callable[[], object], timeout: float = 10.0) -> None:
    """Pause until `check()` holds; fail with the check's name rather than hang.

    The timeout is generous on purpose: on a loaded 2-core machine a repaint can take seconds, and
    the wait ends as soon as the fact shows, so an idle run pays nothing for it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _holds(check):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(check, '__name__', check)}")
        await pilot.pause(0.02)


async def type_text(pilot: Pilot, text: str) -> None:
    """Key by key, as a person types (keep texts short: each key waits for the app to idle)."""
    await pilot.press(*text)


# Fixtures shared by the pilot tests: import them into a test module by name.
@pytest.fixture
async def store(tmp_path):
    """A real store in the factory's usual place under tmp_path."""
    s = await Store.open(tmp_path / "memory" / "cockpit.db")
    yield s
    await s.close()


@pytest.fixture
def config(tmp_path):
    """The factory of make_config, with an empty rules/ directory."""
    (tmp_path / "rules").mkdir()
    return make_config(tmp_path)
