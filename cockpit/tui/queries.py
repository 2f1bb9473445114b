"""Read-only queries the screens need and no other module offers (the meter, memory and rules modules
are used where they do). Nothing here decides anything: it reads the store and git."""

from __future__ import annotations

import time
from pathlib import Path

from ..config import FactoryConfig
from ..domain.budget import FACTORY_KEY, Scope, day_of, simulated_key, usd_of
from ..domain.events import Event, Kind
from ..domain.tasks import Task
from ..factory.workspaces import GitError, git
from ..store import reads
from ..store import Store
from .agents import LIFECYCLE_KINDS

DIFF_LINES = 4000
"""A longer diff is cut when shown (the full one is a `git diff` away)."""

TRANSCRIPT_KINDS = (Kind.AGENT_STARTED.value, Kind.AGENT_TEXT.value, Kind.AGENT_TOOL.value,
                    Kind.AGENT_TOOL_RESULT.value, Kind.AGENT_FINISHED.value, Kind.AGENT_STOPPED.value,
                    Kind.MODEL_CALL.value, Kind.REFUSED.value)

RULES_KINDS = (Kind.RULES_CHANGED.value, Kind.RULES_ERROR.value)


async def lifecycle_events(store: Store) -> list[Event]:
    """Every agent's start, finish, stop, pause and resume: enough to know who is at work after a restart."""
    return await store.events(kinds=LIFECYCLE_KINDS)


def product_spend(store: Store, config: FactoryConfig, product: str) -> tuple[float, float | None]:
    """(settled USD, effective budget or None) from the store's budget book: no I/O."""
    key = (Scope.PRODUCT, product)
    return usd_of(store.budget.total(key).settled), store.budget.limit(key, limits=config.budget_limits())


def factory_spend(store: Store, config: FactoryConfig, now: float) -> dict[str, float | None]:
    """Today's and all-time real spend with their limits, and the simulated spend apart, from the budget book."""
    limits = config.budget_limits()
    day = (Scope.DAY, day_of(now))
    return {
        "today": usd_of(store.budget.total(day).settled),
        "day_limit": store.budget.limit(day, limits=limits),
        "total": usd_of(store.budget.total(FACTORY_KEY).settled),
        "factory_limit": store.budget.limit(FACTORY_KEY, limits=limits),
        "sim_today": usd_of(store.budget.total(simulated_key(day)).settled),
        "sim_total": usd_of(store.budget.total(simulated_key(FACTORY_KEY)).settled),
    }


async def spend_per_day(store: Store, *, days: int = 14, now: float | None = None) -> dict[str | None, list[float]]:
    """Settled USD per product per local day, the last `days` days, oldest first (for sparklines)."""
    now = time.time() if now is None else now
    labels = [day_of(now - 86400 * k) for k in range(days - 1, -1, -1)]
    rows = await reads.ledger_settled_between(store, now - 86400 * (days + 1), now)
    out: dict[str | None, list[float]] = {}
    where = {label: i for i, label in enumerate(labels)}
    for product, ts, usd in rows:
        i = where.get(day_of(ts))
        if i is not None:
            out.setdefault(product, [0.0] * days)[i] += usd
    return out


async def transcript_events(store: Store, task_id: str, agent: str, *, limit: int = 3000) -> list[Event]:
    """What `agent` said and did on `task_id` (its last `limit` events), oldest first."""
    events = await store.events(task_id=task_id, actor=agent, kinds=TRANSCRIPT_KINDS, limit=limit, newest_first=True)
    events.reverse()
    return events


NOISY_KINDS = frozenset(TRANSCRIPT_KINDS) | {Kind.SPEND_RESERVED.value, Kind.SPEND.value}
"""Kinds left out of a task's history: its agents' chatter and the ledger's bookkeeping."""


async def task_history(store: Store, task_id: str) -> list[Event]:
    """The task's own events (lifecycle, verdicts, reviews, defects, human steps), not its agents' chatter."""
    return [e for e in await store.events(task_id=task_id) if e.kind not in NOISY_KINDS]


async def rules_events(store: Store, limit: int = 200) -> list[Event]:
    events = await store.events(kinds=RULES_KINDS, limit=limit, newest_first=True)
    events.reverse()
    return events


async def task_diff(config: FactoryConfig, task: Task) -> tuple[str, str]:
    """(what the diff is, the diff): the change against main, or what landed for a merged task."""
    if task.commit is None:
        return "no commit yet", ""
    try:
        repo: Path = config.product_path(task.product)
        branch = config.product(task.product).main_branch
    except KeyError:
        return f"{task.product} is not in factory.toml: its repository is unknown", ""
    args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv"]
    try:
        if task.merged_commit:
            label = f"what landed: {task.merged_commit[:10]} (merge of {task.commit[:10]})"
            out = await git(*args, f"{task.merged_commit}^1", task.merged_commit, "--", cwd=repo)
        else:
            label = f"{task.commit[:10]} against {branch}"
            out = await git(*args, f"{branch}...{task.commit}", "--", cwd=repo)
    except (GitError, OSError) as e:
        return f"git could not show the diff: {e}", ""
    lines = out.splitlines()
    if len(lines) > DIFF_LINES:
        out = "\n".join(lines[:DIFF_LINES]) + f"\n… {len(lines) - DIFF_LINES} more lines (git diff shows all)"
    return label, out


async def known_agents(store: Store) -> list[tuple[str, str | None, str | None]]:
    """(agent, product, task) of every agent that ever started, newest first (for the palette)."""
    return await reads.started_agents(store)
