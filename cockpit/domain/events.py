"""Events: the one append-only record of everything that happens in a factory.

Every state on screen is a fold of these. Kinds are strings in the database so
that a new kind needs no migration; every kind the cockpit writes or reads is a
member of `Kind` (tests/test_event_kinds.py fails on a kind spelled as a literal
anywhere else under cockpit/). `TASK_KINDS` are the ones the domain validates.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Kind(StrEnum):
    # task lifecycle (validated by the domain state machine)
    TASK_CREATED = "task.created"
    TASK_STARTED = "task.started"
    COMMITTED = "task.committed"
    SUBMITTED = "task.submitted"
    VERDICT = "gate.verdict"
    CHECKED = "task.checked"
    APPROVED = "review.approved"
    CHANGES_REQUESTED = "review.changes_requested"
    READY = "task.ready"
    SENT_BACK = "task.sent_back"
    BLOCKED = "task.blocked"
    OVERRIDE = "human.override"
    # the system carries a human override to a later commit of the task (a re-merge of main into it)
    OVERRIDE_CARRIED = "override.carried"
    RETRY = "human.retry"
    MERGED = "task.merged"
    SPEND = "spend.settled"
    DEFECT_OPENED = "defect.opened"
    DEFECT_CLOSED = "defect.closed"
    # a human raises a budget; scope "task" is a task event (it raises the task's budget_usd)
    BUDGET_RAISED = "budget.raised"
    # a human edits a task's title, body or priority (not a done one)
    TASK_EDITED = "task.edited"
    # not task state: recorded as they come
    REFUSED = "action.refused"
    AGENT_STARTED = "agent.started"
    AGENT_TEXT = "agent.text"
    AGENT_TOOL = "agent.tool"
    AGENT_TOOL_RESULT = "agent.tool_result"
    AGENT_FINISHED = "agent.finished"
    MODEL_CALL = "model.call"
    GATE_STARTED = "gate.started"
    DEFECT_REJECTED = "defect.rejected"  # a reported defect whose reproduction did not fail: recorded, not opened
    AGENT_STOPPED = "agent.stopped"
    AGENT_PAUSED = "agent.paused"
    AGENT_RESUMED = "agent.resumed"
    MODEL_RETRY = "model.retry"  # a broken stream retried by the agent loop
    # the ledger's bookkeeping: a worst-case price held before a call, and a call settled with no task
    SPEND_RESERVED = "spend.reserved"
    SPEND_UNTASKED = "spend.settled_untasked"
    RULES_CHANGED = "rules.changed"
    RULES_ERROR = "rules.error"
    RECOVERED = "factory.recovered"  # what recovery found in flight after a crash, and did with it
    # a lesson's life (store/memory.py): every change to the memory is one of these
    MEMORY_REMEMBERED = "memory.remembered"
    MEMORY_UPDATED = "memory.updated"
    MEMORY_SUPERSEDED = "memory.superseded"
    MEMORY_PINNED = "memory.pinned"
    MEMORY_DELETED = "memory.deleted"
    MEMORY_RESTORED = "memory.restored"
    MEMORY_IMPORTED = "memory.imported"
    MEMORY_PROPOSED = "memory.proposed"
    MEMORY_REJECTED = "memory.proposal_rejected"
    # read by the rate (domain/metrics.py) when a log holds them; the cockpit itself writes none yet
    TASK_REOPENED = "task.reopened"
    TASK_ABANDONED = "task.abandoned"
    TASK_CANCELLED = "task.cancelled"
    TASK_DROPPED = "task.dropped"
    NOTE = "note"


TASK_KINDS: frozenset[str] = frozenset(
    {
        Kind.TASK_CREATED,
        Kind.TASK_STARTED,
        Kind.COMMITTED,
        Kind.SUBMITTED,
        Kind.VERDICT,
        Kind.CHECKED,
        Kind.APPROVED,
        Kind.CHANGES_REQUESTED,
        Kind.READY,
        Kind.SENT_BACK,
        Kind.BLOCKED,
        Kind.OVERRIDE,
        Kind.OVERRIDE_CARRIED,
        Kind.RETRY,
        Kind.MERGED,
        Kind.SPEND,
        Kind.DEFECT_OPENED,
        Kind.DEFECT_CLOSED,
        Kind.TASK_EDITED,
    }
)


class Event(BaseModel):
    """One fact. `id` is assigned by the store when the event is committed."""

    model_config = ConfigDict(frozen=True)

    kind: str
    actor: str
    product: str | None = None
    task_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    ts: float = Field(default_factory=time.time)
    id: int | None = None

    @property
    def is_task_event(self) -> bool:
        if self.kind == Kind.BUDGET_RAISED:
            return self.data.get("scope") == "task"
        return self.kind in TASK_KINDS
