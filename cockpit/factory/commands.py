"""What a human can do to a task: the same functions behind the TUI keys and the CLI.

Each one appends an event through the store, so the domain validates it and a
refusal (e.g. approving a task that is not blocked) is recorded and raised.
"""

from __future__ import annotations

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
