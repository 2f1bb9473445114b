"""What a human can do to a task: the same functions behind the TUI keys and the CLI.

Each one appends an event through the store, so the domain validates it and a
refusal (e.g. approving a task that is not blocked) is recorded and raised.
"""

from __future__ import annotations

import time

from ..config import FactoryConfig
from ..domain.budget import RaiseChoice, Scope, budget_to_raise, day_of, unlimited_refusal
from ..domain.events import Event, Kind
from ..domain.errors import Refused
from ..store import Store


def _task(store: Store, task_id: str):
    t = store.task(task_id)
    if t is None:
        raise Refused(f"no task {task_id!r}")
    return t


async def add_task(store: Store, *, product: str, title: str, body: str = "", priority: int = 0,
                   actor: str = "human:you", budget_usd: float | None = None) -> Event:
    if not title.strip():
        raise Refused("a task needs a title")
    data: dict = {"title": title.strip(), "body": body, "priority": priority}
    if budget_usd is not None:
        data["budget_usd"] = budget_usd
    return await store.append(Event(kind=Kind.TASK_CREATED, actor=actor, product=product, data=data))


async def queue_task(store: Store, config: FactoryConfig, *, product: str, title: str, body: str = "",
                     priority: int = 0, actor: str) -> Event:
    """A human's new task on a configured product, with the product's default task budget (`task_budget_usd`):
    the CLI's `task add` and the TUI's new-task form both come here."""
    try:
        p = config.product(product)
    except KeyError:
        names = ", ".join(p.name for p in config.products) or "none"
        raise Refused(f"no product {product!r} in {config.path} (products: {names})") from None
    return await add_task(store, product=p.name, title=title, body=body, priority=priority, actor=actor,
                          budget_usd=p.task_budget_usd)


async def approve_override(store: Store, task_id: str, *, actor: str, note: str) -> Event:
    """A human lands a blocked task anyway: recorded with who and why, bound to its latest commit."""
    t = _task(store, task_id)
    return await store.append(Event(kind=Kind.OVERRIDE, actor=actor, product=t.product, task_id=task_id,
                                    data={"note": note}))


async def send_back(store: Store, task_id: str, *, actor: str, instruction: str) -> Event:
    """Back to the builder with an instruction it will read first."""
    t = _task(store, task_id)
    return await store.append(Event(kind=Kind.SENT_BACK, actor=actor, product=t.product, task_id=task_id,
                                    data={"reason": instruction}))


async def retry(store: Store, task_id: str, *, actor: str) -> Event:
    """Resume a blocked task where it stopped (e.g. after a transient failure)."""
    t = _task(store, task_id)
    return await store.append(Event(kind=Kind.RETRY, actor=actor, product=t.product, task_id=task_id, data={}))


async def raise_budget(store: Store, *, scope: str, usd: float, actor: str, key: str | None = None) -> Event:
    """Raise a budget by `usd`: scope task (key: the task id), product (key: its name), day (key: the
    local date, default today) or factory. Effective limit = configured + every raise, rebuilt from
    these events after a restart; only a human may raise (the store refuses anyone else). A budget that is
    unlimited in factory.toml (the limits the store was opened with) is refused: raising it would mean nothing."""
    try:
        sc = Scope(scope)
    except ValueError:
        raise Refused(f"no budget scope {scope!r}: use task, product, day or factory") from None
    if sc != Scope.TASK and (why := unlimited_refusal(sc, key or "", store.budget.limits)):
        raise Refused(why)
    product = task_id = None
    if sc == Scope.TASK:
        t = _task(store, key or "")
        task_id, product, key = t.id, t.product, t.id
    elif sc == Scope.PRODUCT:
        if not key:
            raise Refused("a product budget raise names the product")
        product = key
    elif sc == Scope.DAY:
        key = key or day_of(time.time())
    else:
        key = ""
    return await store.append(Event(kind=Kind.BUDGET_RAISED, actor=actor, product=product, task_id=task_id,
                                    data={"scope": sc.value, "key": key, "usd": usd}))


async def raise_blocking_budget(store: Store, task_id: str, *, usd: float, actor: str) -> Event:
    """Raise whichever budget blocked this task (one key in the cockpit, with an amount); then retry it."""
    t = _task(store, task_id)
    if "budget" not in t.blocked_by:
        raise Refused(f"task {task_id} is not blocked by a budget")
    blocks = await store.events(task_id=task_id, kinds=[Kind.BLOCKED], limit=1, newest_first=True)
    figures = blocks[0].data.get("budget") if blocks else None
    if not isinstance(figures, dict):
        raise Refused(f"task {task_id}: the block does not say which budget; raise one with `cockpit budget raise`")
    return await raise_budget(store, scope=figures["scope"], key=figures.get("key") or None, usd=usd, actor=actor)


def task_raise_choice(store: Store, task_id: str) -> RaiseChoice:
    """Which budget a one-key raise on this task lifts (domain/budget.py `budget_to_raise`), or Refused."""
    t = _task(store, task_id)
    return budget_to_raise(task_id=t.id, product=t.product, blocked_by_budget="budget" in t.blocked_by,
                           task_budget_usd=t.budget_usd, limits=store.budget.limits)


async def raise_task_budget(store: Store, task_id: str, *, usd: float, actor: str) -> Event:
    """The one-key raise on a task: the budget that blocked it, else its own, else its product's."""
    choice = task_raise_choice(store, task_id)
    if choice.scope is None:
        return await raise_blocking_budget(store, task_id, usd=usd, actor=actor)
    return await raise_budget(store, scope=choice.scope, key=choice.key, usd=usd, actor=actor)


async def reconcile(store: Store, *, actor: str, call_id: str | None = None, usd: float | None = None) -> list[str]:
    """Close unsettled model calls (one, or every one not in flight): the remainder they held is freed.

    `usd` (one call only) is the real cost when you know it from the bill; default: what the stream reported."""
    if call_id is not None:
        await store.reconcile(call_id, usd=usd, actor=actor)
        return [call_id]
    if usd is not None:
        raise Refused("give --call with --usd: a cost belongs to one call")
    done = []
    for cid, hold in list(store.budget.open.items()):
        if hold.state == "unsettled" or not hold.live:
            await store.reconcile(cid, actor=actor)
            done.append(cid)
    return done


async def edit_task(store: Store, task_id: str, *, actor: str, title: str | None = None, body: str | None = None,
                    priority: int | None = None) -> Event:
    """Change what a task asks for (not a done one); the next session's brief reads the new text."""
    t = _task(store, task_id)
    data: dict = {}
    if title is not None and title.strip() != t.title:
        data["title"] = title.strip()
    if body is not None and body != t.body:
        data["body"] = body
    if priority is not None and priority != t.priority:
        data["priority"] = priority
    return await store.append(Event(kind=Kind.TASK_EDITED, actor=actor, product=t.product, task_id=task_id, data=data))


def _running_factory(orchestrator, agent: str, what: str):
    if orchestrator is None:
        raise Refused(f"{what} {agent}: no factory runs in this cockpit (do it where `cockpit run` runs)")
    return orchestrator


async def pause_agent(store: Store, orchestrator, agent: str, *, actor: str) -> Event:
    """No new session for `agent` (the one it runs finishes); recorded, then applied to the running factory."""
    orch = _running_factory(orchestrator, agent, "pause")
    ev = await store.append(Event(kind=Kind.AGENT_PAUSED, actor=actor, task_id=orch.agent_tasks.get(agent),
                                  data={"agent": agent}))
    orch.pause_agent(agent)
    return ev


async def resume_agent(store: Store, orchestrator, agent: str, *, actor: str) -> Event:
    orch = _running_factory(orchestrator, agent, "resume")
    ev = await store.append(Event(kind=Kind.AGENT_RESUMED, actor=actor, task_id=orch.agent_tasks.get(agent),
                                  data={"agent": agent}))
    orch.resume_agent(agent)
    return ev


async def stop_agent(store: Store, orchestrator, agent: str, *, actor: str) -> None:
    """Cancel the agent's session now; its task blocks for the human (the orchestrator records `agent.stopped`)."""
    orch = _running_factory(orchestrator, agent, "stop")
    if not await orch.stop_agent(agent, by=actor):
        raise Refused(f"stop {agent}: it is not running")
