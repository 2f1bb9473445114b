"""Wiring: open a factory's store, model client and orchestrator, and close them in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..agents.client import ModelClient, make_client
from ..config import FactoryConfig
from ..domain.visible import visible_line
from ..store import Store
from .orchestrator import Orchestrator
from .status import status


@dataclass
class Factory:
    config: FactoryConfig
    store: Store
    model: ModelClient
    orchestrator: Orchestrator


@asynccontextmanager
async def open_factory(config: FactoryConfig) -> AsyncIterator[Factory]:
    store = await Store.open(config.store_path, budgets=config.budget_limits())
    model = None
    try:
        model = make_client(config)
        yield Factory(config, store, model, Orchestrator(config, store, model))
    finally:
        if model is not None:
            await model.close()
        await store.close()


async def run_headless(config: FactoryConfig, *, timeout: float | None = None) -> dict:
    """Run until nothing is left to drive (or timeout); return the status summary."""
    async with open_factory(config) as f:
        await f.orchestrator.run(until_idle=True, timeout=timeout)
        await f.store.flush()
        return await status(config, f.store)


def summary_lines(st: dict) -> list[str]:
    """`cockpit status` and the headless summary: one line per task, its title shown as written, never obeyed
    by the terminal (cockpit.domain.visible)."""
    lines = []
    for p in st["products"]:
        lines.append(f"{visible_line(p['name'])}:")
        for t in p["tasks"]:
            extra = f"  blocked by: {visible_line(', '.join(t['blocked_by']))}" if t["blocked_by"] else ""
            lines.append(f"  {visible_line(t['id']):<5} {t['state']:<9} {task_spend(t)}  "
                         f"{visible_line(t['title'])}{extra}")
            why = (t.get("block_detail") or "").strip().splitlines()
            if t["state"] == "blocked" and why:
                lines.append(f"        why: {visible_line(why[0][:200])}")
    sim = st.get("simulated_usd") or 0.0
    lines.append(f"spend: ${st['spend_usd']:.4f}" + (f"  (+ ${sim:.4f} simulated: the offline scripted model's calls, "
                                                      "not real money)" if sim else ""))
    if st.get("offline"):
        lines.append(f"OFFLINE ({st['offline']}): the scripted model answered; set ANTHROPIC_API_KEY to use Claude")
    return lines


def task_spend(t: dict) -> str:
    """A task's spend for a summary line: real, or marked simulated when only the scripted model worked on it."""
    sim = t.get("simulated_usd") or 0.0
    if sim and not t["spend_usd"]:
        return f"sim ${sim:.4f}"
    return f"${t['spend_usd']:.4f}" + (f" +sim ${sim:.4f}" if sim else "")


__all__ = ["Factory", "open_factory", "run_headless", "summary_lines", "asyncio"]
