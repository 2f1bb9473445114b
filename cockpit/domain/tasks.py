"""Tasks and their state machine: the invariants every path through the cockpit relies on.

`apply(task, event)` is the only way a task changes. It is pure: it returns a
new Task or raises `Refused`. The store calls it inside its single writer
before an event is committed, so neither the TUI, the CLI, an agent's tool call
nor a bug can append a task event the domain would refuse.

Invariants (DESIGN.md 1-3):
1. `done` only when, for the latest commit, the tests gate passed, an actor who
   pushed no commit of the change approved it, no defect is open and the budget
   is not exceeded; or a human override of that commit is recorded.
2. Verdicts and approvals name the commit they judged; a new commit makes the
   old ones irrelevant (they stay in the history, they stop counting).
3. No actor approves its own work; each role may only emit its own kinds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .actors import Role, role_of
from .errors import Refused
from .events import Event, Kind


class TaskState(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    CHECKING = "checking"
    REVIEWING = "reviewing"
    MERGING = "merging"
    DONE = "done"
    BLOCKED = "blocked"


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    gate: str
    commit: str
    actor: str
    outcome: Outcome
    detail: str = ""
    event_id: int | None = None


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)
    commit: str
    actor: str
    note: str = ""
    event_id: int | None = None


class Override(BaseModel):
    model_config = ConfigDict(frozen=True)
    commit: str | None
    actor: str
    note: str
    event_id: int | None = None


class Task(BaseModel):
    """A unit of work on one product, folded from its events."""

    model_config = ConfigDict(frozen=True)

    id: str
    product: str
    title: str
    body: str = ""
    priority: int = 0
    state: TaskState = TaskState.QUEUED
    blocked_by: list[str] = Field(default_factory=list)
    block_detail: str = ""
    resume_state: TaskState | None = None
    commit: str | None = None
    authors: list[str] = Field(default_factory=list)
    commits: list[str] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    approvals: list[Approval] = Field(default_factory=list)
    open_defects: list[str] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    rounds: int = 0
    rounds_base: int = 0  # rounds already used when the human last stepped in; the limit counts from here
    feedback: list[str] = Field(default_factory=list)
    assignee: str | None = None
    budget_usd: float | None = None
    spend_usd: float = 0.0
    merged_commit: str | None = None
    created_ts: float = 0.0
    updated_ts: float = 0.0
    last_event_id: int = 0


# --- gate evaluation -------------------------------------------------------------


def tests_verdict(task: Task, commit: str | None = None) -> Verdict | None:
    """The latest tests verdict on `commit` (default: the task's latest commit)."""
    commit = commit or task.commit
    found = [v for v in task.verdicts if v.gate == "tests" and v.commit == commit]
    return found[-1] if found else None


def valid_approvals(task: Task) -> list[Approval]:
    """Approvals that count: of the latest commit, by someone who pushed no commit of the change."""
    return [a for a in task.approvals if a.commit == task.commit and a.actor not in task.authors]


def gate_lights(task: Task) -> dict[str, str]:
    """One light per gate for the latest commit: 'pass', 'fail' or 'wait'."""
    tv = tests_verdict(task) if task.commit else None
    lights = {
        "tests": "wait" if tv is None else tv.outcome.value,
        "review": "pass" if valid_approvals(task) else "wait",
        "defects": "fail" if task.open_defects else "pass",
        "budget": "fail" if over_budget(task) else "pass",
    }
    return lights


def over_budget(task: Task) -> bool:
    return task.budget_usd is not None and task.spend_usd > task.budget_usd + 1e-9


def missing_gates(task: Task) -> list[str]:
    """What still stands between the latest commit and `done` (empty: it may merge)."""
    if task.commit is None:
        return ["no commit"]
    missing: list[str] = []
    tv = tests_verdict(task)
    if tv is None or tv.outcome != Outcome.PASS:
        missing.append("tests")
    if not valid_approvals(task):
        missing.append("review")
    if task.open_defects:
        missing.append("defects")
    if over_budget(task):
        missing.append("budget")
    return missing


def human_override(task: Task) -> Override | None:
    """A human override that covers the task's latest commit, if any."""
    for o in reversed(task.overrides):
        if o.commit == task.commit:
            return o
    return None


def rounds_left(task: Task, max_rounds: int) -> int:
    """Builder rounds left before the task must wait for the human."""
    return max_rounds - (task.rounds - task.rounds_base)


def may_merge(task: Task) -> bool:
    return not missing_gates(task) or human_override(task) is not None


# --- the state machine -----------------------------------------------------------

# Which roles may emit which kinds. Anything not listed is refused.
_ALLOWED: dict[str, frozenset[Role]] = {
    Kind.TASK_CREATED: frozenset({Role.HUMAN, Role.SYSTEM}),
    Kind.TASK_STARTED: frozenset({Role.SYSTEM}),
    Kind.COMMITTED: frozenset({Role.BUILDER}),
    Kind.SUBMITTED: frozenset({Role.BUILDER}),
    Kind.VERDICT: frozenset({Role.SYSTEM}),
    Kind.CHECKED: frozenset({Role.SYSTEM}),
    Kind.APPROVED: frozenset({Role.REVIEWER, Role.HUMAN}),
    Kind.CHANGES_REQUESTED: frozenset({Role.REVIEWER, Role.HUMAN}),
    Kind.READY: frozenset({Role.SYSTEM}),
    Kind.SENT_BACK: frozenset({Role.SYSTEM, Role.HUMAN}),
    Kind.BLOCKED: frozenset({Role.SYSTEM}),
    Kind.OVERRIDE: frozenset({Role.HUMAN}),
    Kind.RETRY: frozenset({Role.HUMAN}),
    Kind.MERGED: frozenset({Role.SYSTEM}),
    Kind.SPEND: frozenset({Role.SYSTEM}),
}

_ACTIVE = frozenset({TaskState.BUILDING, TaskState.CHECKING, TaskState.REVIEWING})
_OPEN = frozenset(set(TaskState) - {TaskState.DONE})


def _need(task: Task, states: frozenset[TaskState] | set[TaskState], what: str) -> None:
    if task.state not in states:
        names = ", ".join(sorted(s.value for s in states))
        raise Refused(f"{what}: task {task.id} is {task.state.value}, must be one of: {names}")


def _str(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Refused(f"{what}: missing '{key}'")
    return value


def create(event: Event) -> Task:
    """The first event of a task: the store has assigned `event.task_id`."""
    if event.kind != Kind.TASK_CREATED:
        raise Refused(f"{event.kind}: no task {event.task_id!r}")
    if role_of(event.actor) not in _ALLOWED[Kind.TASK_CREATED]:
        raise Refused(f"{event.actor} may not create tasks")
    if not event.task_id or not event.product:
        raise Refused("task.created needs a task id and a product")
    title = _str(event.data, "title", "task.created")
    budget = event.data.get("budget_usd")
    return Task(
        id=event.task_id,
        product=event.product,
        title=title,
        body=str(event.data.get("body", "")),
        priority=int(event.data.get("priority", 0)),
        budget_usd=float(budget) if budget is not None else None,
        created_ts=event.ts,
        updated_ts=event.ts,
        last_event_id=event.id or 0,
    )


def apply(task: Task, event: Event) -> Task:
    """Return the task after `event`, or raise Refused. Never mutates `task`."""
    if event.task_id != task.id:
        raise Refused(f"event for {event.task_id} applied to {task.id}")
    role = role_of(event.actor)
    allowed = _ALLOWED.get(event.kind)
    if allowed is None:
        raise Refused(f"{event.kind} is not a task event")
    if role not in allowed:
        raise Refused(f"{event.actor} ({role.value}) may not {event.kind}")
    d = event.data
    up: dict[str, Any] = {"updated_ts": event.ts, "last_event_id": event.id or task.last_event_id}
    k = event.kind

    if k == Kind.TASK_CREATED:
        raise Refused(f"task {task.id} exists already")

    elif k == Kind.TASK_STARTED:
        _need(task, {TaskState.QUEUED}, "start")
        up.update(state=TaskState.BUILDING, assignee=d.get("agent"))

    elif k == Kind.COMMITTED:
        _need(task, {TaskState.BUILDING}, "commit")
        sha = _str(d, "sha", "commit")
        authors = task.authors if event.actor in task.authors else [*task.authors, event.actor]
        up.update(commit=sha, commits=[*task.commits, sha], authors=authors)

    elif k == Kind.SUBMITTED:
        _need(task, {TaskState.BUILDING}, "submit")
        if task.commit is None:
            raise Refused("submit: nothing committed yet")
        if d.get("commit") not in (None, task.commit):
            raise Refused(f"submit: {d.get('commit')} is not the latest commit {task.commit}")
        up.update(state=TaskState.CHECKING)

    elif k == Kind.VERDICT:
        _need(task, _OPEN, "verdict")
        gate = _str(d, "gate", "verdict")
        commit = _str(d, "commit", "verdict")
        if commit not in task.commits:
            raise Refused(f"verdict: {commit} is not a commit of task {task.id}")
        try:
            outcome = Outcome(d.get("outcome"))
        except ValueError:
            raise Refused(f"verdict: outcome must be pass or fail, not {d.get('outcome')!r}") from None
        v = Verdict(gate=gate, commit=commit, actor=event.actor, outcome=outcome,
                    detail=str(d.get("detail", ""))[:4000], event_id=event.id)
        up.update(verdicts=[*task.verdicts, v])

    elif k == Kind.CHECKED:
        _need(task, {TaskState.CHECKING}, "checked")
        tv = tests_verdict(task)
        if tv is None or tv.outcome != Outcome.PASS:
            raise Refused(f"checked: the tests gate has not passed on {task.commit}")
        up.update(state=TaskState.REVIEWING)

    elif k == Kind.APPROVED:
        _need(task, {TaskState.REVIEWING, TaskState.BLOCKED, TaskState.CHECKING}, "approve")
        commit = _str(d, "commit", "approve")
        if commit != task.commit:
            raise Refused(f"approve: {commit} is not the latest commit {task.commit} of {task.id}")
        if event.actor in task.authors:
            raise Refused(f"approve: {event.actor} committed to {task.id} and may not approve it")
        a = Approval(commit=commit, actor=event.actor, note=str(d.get("note", "")), event_id=event.id)
        up.update(approvals=[*task.approvals, a])

    elif k == Kind.CHANGES_REQUESTED:
        _need(task, {TaskState.REVIEWING}, "request changes")
        commit = _str(d, "commit", "request changes")
        if commit != task.commit:
            raise Refused(f"request changes: {commit} is not the latest commit {task.commit}")
        if event.actor in task.authors:
            raise Refused(f"request changes: {event.actor} committed to {task.id}")
        note = _str(d, "note", "request changes")
        up.update(state=TaskState.BUILDING, rounds=task.rounds + 1, feedback=[*task.feedback, f"{event.actor}: {note}"])

    elif k == Kind.READY:
        _need(task, {TaskState.REVIEWING}, "ready")
        missing = missing_gates(task)
        if missing:
            raise Refused(f"ready: {task.id} still needs {', '.join(missing)} on {task.commit}")
        up.update(state=TaskState.MERGING)

    elif k == Kind.SENT_BACK:
        states = _ACTIVE | {TaskState.MERGING} if role == Role.SYSTEM else {TaskState.BLOCKED}
        _need(task, states, "send back")
        reason = _str(d, "reason", "send back")
        up.update(state=TaskState.BUILDING, rounds=task.rounds + 1, feedback=[*task.feedback, f"{event.actor}: {reason}"],
                  blocked_by=[], block_detail="", resume_state=None)
        if role == Role.HUMAN:
            up["rounds_base"] = task.rounds + 1

    elif k == Kind.BLOCKED:
        _need(task, _OPEN - {TaskState.BLOCKED}, "block")
        reasons = d.get("reasons")
        if not isinstance(reasons, list) or not reasons or not all(isinstance(r, str) and r for r in reasons):
            raise Refused("block: needs a non-empty list of reasons")
        up.update(state=TaskState.BLOCKED, blocked_by=list(reasons),
                  block_detail=str(d.get("detail", ""))[:4000], resume_state=task.state)

    elif k == Kind.OVERRIDE:
        _need(task, {TaskState.BLOCKED}, "override")
        note = _str(d, "note", "override")
        if task.commit is None:
            raise Refused(f"override: {task.id} has no commit to land")
        o = Override(commit=task.commit, actor=event.actor, note=note, event_id=event.id)
        up.update(state=TaskState.MERGING, overrides=[*task.overrides, o], blocked_by=[], block_detail="",
                  resume_state=None)

    elif k == Kind.RETRY:
        _need(task, {TaskState.BLOCKED}, "retry")
        back = task.resume_state or TaskState.QUEUED
        up.update(state=back, blocked_by=[], block_detail="", resume_state=None, rounds_base=task.rounds)

    elif k == Kind.MERGED:
        _need(task, {TaskState.MERGING}, "merge")
        if not may_merge(task):
            raise Refused(f"merge: {task.id} needs {', '.join(missing_gates(task))} on {task.commit}")
        up.update(state=TaskState.DONE, merged_commit=_str(d, "merged_commit", "merge"))

    elif k == Kind.SPEND:
        usd = d.get("usd")
        if not isinstance(usd, (int, float)) or usd < 0:
            raise Refused("spend: needs a non-negative 'usd'")
        up.update(spend_usd=round(task.spend_usd + float(usd), 9))

    return task.model_copy(update=up)


def fold(events: list[Event]) -> dict[str, Task]:
    """Rebuild every task from its events (refused events are never in the log)."""
    tasks: dict[str, Task] = {}
    for e in events:
        if not e.is_task_event or e.task_id is None:
            continue
        t = tasks.get(e.task_id)
        tasks[e.task_id] = create(e) if t is None else apply(t, e)
    return tasks
