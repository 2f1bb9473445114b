"""Tasks and their state machine: the invariants every path through the cockpit relies on.

`apply(task, event)` is the only way a task changes. It is pure: it returns a
new Task or raises `Refused`. The store calls it inside its single writer
before an event is committed, so neither the TUI, the CLI, an agent's tool call
nor a bug can append a task event the domain would refuse.

Invariants (1-3 of docs/architecture.md, which says where each is tested):
1. `done` only when, for the latest commit, the tests gate passed, an actor who
   pushed no commit of the change approved it, no defect is open and the budget
   is not exceeded; or a human override of that commit is recorded (or carried to it: a later
   commit that git shows to be only a merge of main into the overridden one, whose guard finds
   nothing the human did not accept; see `carry_override` and `remerge_refusal`).
2. Verdicts and approvals name the commit they judged; a new commit makes the
   old ones irrelevant (they stay in the history, they stop counting).
3. No actor approves its own work; each role may only emit its own kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


OPEN_STATES: frozenset[TaskState] = frozenset(TaskState) - {TaskState.DONE}
"""Open: not done, so it may still change (a blocked task is open: it waits on the human). The one meaning of "open"."""
IN_FLIGHT_STATES: frozenset[TaskState] = OPEN_STATES - {TaskState.BLOCKED}
"""Open and not waiting on the human: the states the orchestrator drives forward."""
AT_WORK_STATES: frozenset[TaskState] = IN_FLIGHT_STATES - {TaskState.QUEUED}
"""Started and moving: a builder, a gate, a reviewer or the merge queue is at it."""


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
    # a "merge" verdict judges the merge of `source` (the task's commit) onto main at `base`
    source: str | None = None
    base: str | None = None
    # a guard verdict's findings, one stable key each ("test:tests/test_x.py::test_a, removed ...", "deleted:...",
    # "protected:...", "uncounted"): what a human override accepted, compared across commits
    findings: tuple[str, ...] = ()
    # a passing check made on a merge train: the (task, commit) pairs it was tested on top of, in their order;
    # the merge queue lands this task after them, so the tree it tested is the tree that lands
    ahead: tuple[tuple[str, str], ...] = ()


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)
    commit: str
    actor: str
    note: str = ""
    event_id: int | None = None


class DefectState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Defect(BaseModel):
    """A defect a breaker reported and the cockpit reproduced on `commit` (never a hallucinated one)."""

    model_config = ConfigDict(frozen=True)
    id: str
    title: str
    kind: str  # "command" or "test_file"
    reproduction: str
    commit: str
    actor: str
    state: DefectState = DefectState.OPEN
    detail: str = ""
    closed_by: str | None = None
    closed_commit: str | None = None
    event_id: int | None = None


DEFECT_KINDS = ("command", "test_file")


class Override(BaseModel):
    model_config = ConfigDict(frozen=True)
    commit: str | None
    actor: str
    note: str
    event_id: int | None = None
    carried_from: str | None = None  # set when the system carried the human's override from this commit


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
    open_defects: list[str] = Field(default_factory=list)  # ids of the open entries of `defects`
    defects: list[Defect] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    rounds: int = 0
    rounds_base: int = 0  # rounds already used when the human last stepped in; the limit counts from here
    feedback: list[str] = Field(default_factory=list)
    assignee: str | None = None
    budget_usd: float | None = None
    spend_usd: float = 0.0
    simulated_usd: float = 0.0  # what the offline scripted model's calls would have cost: not real, kept apart
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
    return task.budget_usd is not None and max(task.spend_usd, task.simulated_usd) > task.budget_usd + 1e-9


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
    if guard_failed(task):
        missing.append("guard")
    if over_budget(task):
        missing.append("budget")
    return missing


def human_override(task: Task) -> Override | None:
    """A human override that covers the task's latest commit, if any."""
    for o in reversed(task.overrides):
        if o.commit == task.commit:
            return o
    return None


def guard_verdict(task: Task, commit: str | None = None) -> Verdict | None:
    """The latest guard verdict on `commit` (default: the latest commit)."""
    commit = commit or task.commit
    found = [v for v in task.verdicts if v.gate == GUARD_GATE and v.commit == commit]
    return found[-1] if found else None


def carry_override(task: Task, from_commit: str) -> Override:
    """The human override of `from_commit` that may carry to the task's latest commit, or Refused saying why.

    What a human accepted is a commit's guard findings (e.g. one test fewer in tests/test_units.py). When that
    commit then conflicts with what landed since, a builder merges main into it and resolves the conflict;
    the human's word carries to that re-merge when its tests pass, no defect is open and its guard finds
    nothing the human did not accept. Anything new (another test removed, a protected file) asks again."""
    o = next((o for o in reversed(task.overrides) if o.commit == from_commit and o.carried_from is None), None)
    if o is None:
        o = next((o for o in reversed(task.overrides) if o.commit == from_commit), None)
    if o is None:
        raise Refused(f"carry override: no human override of {from_commit} on {task.id}")
    if from_commit not in task.commits or task.commit is None:
        raise Refused(f"carry override: {from_commit} is not a commit of {task.id}")
    tv = tests_verdict(task)
    if tv is None or tv.outcome != Outcome.PASS:
        raise Refused(f"carry override: the tests gate has not passed on {task.commit}")
    if task.open_defects:
        raise Refused(f"carry override: defects open on {task.id}: {', '.join(task.open_defects)}")
    now = guard_verdict(task)
    if now is None:
        raise Refused(f"carry override: the guard has not judged {task.commit}")
    accepted = [v for v in task.verdicts if v.gate == GUARD_GATE and v.commit == from_commit
                and v.outcome == Outcome.FAIL]
    reaching = [f for f in now.findings if f.startswith(REACH_FINDING)]
    if reaching:
        raise Refused(f"carry override: {task.commit[:12]} reaches into the test reporter, so its tests prove "
                      f"nothing and no earlier word carries to it: {', '.join(reaching)}")
    allowed = set(accepted[-1].findings) if accepted else set()
    new = [f for f in now.findings if f not in allowed]
    if now.outcome == Outcome.FAIL and (new or not now.findings):
        what = ", ".join(new) if new else "findings it could not name"
        raise Refused(f"carry override: the guard found on {task.commit[:12]} what the human did not accept: {what}")
    return o


def remerge_refusal(task: Task, from_commit: str, facts: Any) -> str | None:
    """Why the facts the factory read from git (cockpit.factory.remerge) do not show the task's latest commit
    to be only a merge of main into `from_commit`, or None. A flag is not a fact: the event must name the
    commit, its two parents (`from_commit`, then a commit on main that is none of the task's own), git's own
    merge of them, and nothing beyond it; any of that missing or not matching this task refuses the carry."""
    if not isinstance(facts, dict):
        return "no re-merge facts from git in the event"
    if facts.get("commit") != task.commit:
        return f"the facts are about {str(facts.get('commit'))[:12]}, not the task's latest commit"
    parents = facts.get("parents")
    if not isinstance(parents, list) or len(parents) != 2 or parents[0] != from_commit:
        shown = ", ".join(str(p)[:12] for p in parents) if isinstance(parents, list) else "unknown"
        return f"its parents ({shown or 'none'}) are not the overridden commit and a commit of main"
    main_commit = facts.get("main_commit")
    if not isinstance(main_commit, str) or not main_commit or parents[1] != main_commit:
        return "its second parent is not shown to be on main"
    if main_commit in task.commits:
        return "its second parent is a commit of the task itself, not of main"
    if not isinstance(facts.get("merge_tree"), str) or not facts["merge_tree"]:
        return "git's own merge of its parents was not computed"
    beyond = facts.get("beyond")
    if beyond != []:
        return "it holds changes beyond the merge: " + ("; ".join(map(str, beyond)) if isinstance(beyond, list)
                                                         else "not said")
    return None


def rounds_left(task: Task, max_rounds: int) -> int:
    """Builder rounds left before the task must wait for the human."""
    return max_rounds - (task.rounds - task.rounds_base)


MERGE_GATE = "merge"
# the gate that guards the tests gate itself: tests removed or protected files changed need a human
GUARD_GATE = "guard"
# a guard finding for code that reaches into the test reporter (cockpit.factory.gates): its run's evidence can
# be forged from inside, so a human override never carries to a commit that has one
REACH_FINDING = "reach:"


def guard_failed(task: Task) -> bool:
    """The latest guard verdict on the latest commit failed: only a human override lands it."""
    found = [v for v in task.verdicts if v.gate == GUARD_GATE and v.commit == task.commit]
    return bool(found) and found[-1].outcome == Outcome.FAIL


def merge_tested_green(task: Task, merged_commit: str) -> bool:
    """A passing merge verdict on exactly `merged_commit`, built from the task's latest commit."""
    return any(v.gate == MERGE_GATE and v.commit == merged_commit and v.source == task.commit
               and v.outcome == Outcome.PASS for v in task.verdicts)


def checked_green(task: Task) -> Verdict | None:
    """The passing guard verdict that ended the check of the task's latest commit (the latest guard verdict on
    it, if it passed)."""
    found = [v for v in task.verdicts if v.gate == GUARD_GATE and v.commit == task.commit]
    return found[-1] if found and found[-1].outcome == Outcome.PASS else None


TRAIN_STATES = frozenset({TaskState.REVIEWING, TaskState.MERGING})
"""Checked green and on the way to main: a later task of the product is checked on top of these."""


def train_ahead(task: Task, others: Iterable[Task]) -> list[tuple[str, str]]:
    """(task, commit) of the product's other tasks checked green on their latest commit and not landed yet,
    in the order their checks ended: what `task`'s check is tested on top of (a merge train)."""
    train = []
    for o in others:
        v = checked_green(o) if o.id != task.id and o.product == task.product and o.state in TRAIN_STATES else None
        if v is not None and o.commit is not None:
            train.append((v.event_id or 0, o.id, o.commit))
    return [(tid, c) for _, tid, c in sorted(train)]


def train_waits_for(task: Task, lookup: Callable[[str], Task | None]) -> list[str] | None:
    """The tasks ahead of `task` in its merge train that have yet to land (land after them, and the tree its
    check tested is the tree that lands), or None when the train broke: one of them left it (sent back, blocked,
    a new commit), so the task lands on main as it is, tested there."""
    v = checked_green(task)
    waits: list[str] = []
    for tid, commit in v.ahead if v is not None else ():
        o = lookup(tid)
        if o is None or o.commit != commit:
            return None
        if o.state == TaskState.DONE:
            continue
        if o.state not in TRAIN_STATES:
            return None
        waits.append(tid)
    return waits


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
    Kind.OVERRIDE_CARRIED: frozenset({Role.SYSTEM}),
    Kind.RETRY: frozenset({Role.HUMAN}),
    Kind.MERGED: frozenset({Role.SYSTEM}),
    Kind.SPEND: frozenset({Role.SYSTEM}),
    # a breaker opens (after the cockpit reproduced it); the system closes when it passes on a later
    # commit, or a human does with a note; a builder never closes one
    Kind.DEFECT_OPENED: frozenset({Role.BREAKER}),
    Kind.DEFECT_CLOSED: frozenset({Role.SYSTEM, Role.HUMAN}),
    Kind.BUDGET_RAISED: frozenset({Role.HUMAN}),
    Kind.TASK_EDITED: frozenset({Role.HUMAN}),
}

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
        raise Refused(f"{Kind.TASK_CREATED} needs a task id and a product")
    title = _str(event.data, "title", Kind.TASK_CREATED)
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
    """Return the task after `event`, or raise Refused. Never mutates `task`.

    Who may send a kind is checked here (`_ALLOWED`); what the kind does is one function of `_APPLY`."""
    if event.task_id != task.id:
        raise Refused(f"event for {event.task_id} applied to {task.id}")
    role = role_of(event.actor)
    allowed = _ALLOWED.get(event.kind)
    if allowed is None:
        raise Refused(f"{event.kind} is not a task event")
    if role not in allowed:
        raise Refused(f"{event.actor} ({role.value}) may not {event.kind}")
    up: dict[str, Any] = {"updated_ts": event.ts, "last_event_id": event.id or task.last_event_id}
    up.update(_APPLY[event.kind](task, event, role))
    return task.model_copy(update=up)


Update = dict[str, Any]
"""The fields an event changes on its task (`Task.model_copy(update=...)`)."""


def _created(task: Task, event: Event, role: Role) -> Update:
    raise Refused(f"task {task.id} exists already")


def _started(task: Task, event: Event, role: Role) -> Update:
    _need(task, {TaskState.QUEUED}, "start")
    return {"state": TaskState.BUILDING, "assignee": event.data.get("agent")}


def _committed(task: Task, event: Event, role: Role) -> Update:
    _need(task, {TaskState.BUILDING}, "commit")
    sha = _str(event.data, "sha", "commit")
    authors = task.authors if event.actor in task.authors else [*task.authors, event.actor]
    return {"commit": sha, "commits": [*task.commits, sha], "authors": authors}


def _submitted(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, {TaskState.BUILDING}, "submit")
    if task.commit is None:
        raise Refused("submit: nothing committed yet")
    if d.get("commit") not in (None, task.commit):
        raise Refused(f"submit: {d.get('commit')} is not the latest commit {task.commit}")
    return {"state": TaskState.CHECKING}


def _verdict(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, OPEN_STATES, "verdict")
    gate = _str(d, "gate", "verdict")
    commit = _str(d, "commit", "verdict")
    source = base = None
    if gate == MERGE_GATE:
        # the merge result is a new commit: it must be the merge of the task's latest commit
        source, base = _str(d, "source", "merge verdict"), _str(d, "base", "merge verdict")
        if source != task.commit:
            raise Refused(f"merge verdict: {source} is not the latest commit {task.commit} of {task.id}")
    elif commit not in task.commits:
        raise Refused(f"verdict: {commit} is not a commit of task {task.id}")
    try:
        outcome = Outcome(d.get("outcome"))
    except ValueError:
        raise Refused(f"verdict: outcome must be pass or fail, not {d.get('outcome')!r}") from None
    findings = d.get("findings") or []
    if not isinstance(findings, list) or not all(isinstance(f, str) for f in findings):
        raise Refused("verdict: 'findings' must be a list of strings")
    ahead = d.get("ahead") or []
    if not isinstance(ahead, list) or not all(
            isinstance(a, list) and len(a) == 2 and all(isinstance(x, str) for x in a) for a in ahead):
        raise Refused("verdict: 'ahead' must be a list of [task, commit] pairs")
    v = Verdict(gate=gate, commit=commit, actor=event.actor, outcome=outcome,
                detail=str(d.get("detail", ""))[:4000], event_id=event.id, source=source, base=base,
                findings=tuple(findings), ahead=tuple((a[0], a[1]) for a in ahead))
    return {"verdicts": [*task.verdicts, v]}


def _checked(task: Task, event: Event, role: Role) -> Update:
    _need(task, {TaskState.CHECKING}, "checked")
    tv = tests_verdict(task)
    if tv is None or tv.outcome != Outcome.PASS:
        raise Refused(f"checked: the tests gate has not passed on {task.commit}")
    if guard_failed(task):
        raise Refused(f"checked: the guard of the tests gate failed on {task.commit}; only a human override lands it")
    return {"state": TaskState.REVIEWING}


def _approved(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, {TaskState.REVIEWING, TaskState.BLOCKED, TaskState.CHECKING}, "approve")
    commit = _str(d, "commit", "approve")
    if commit != task.commit:
        raise Refused(f"approve: {commit} is not the latest commit {task.commit} of {task.id}")
    if event.actor in task.authors:
        raise Refused(f"approve: {event.actor} committed to {task.id} and may not approve it")
    a = Approval(commit=commit, actor=event.actor, note=str(d.get("note", "")), event_id=event.id)
    return {"approvals": [*task.approvals, a]}


def _changes_requested(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, {TaskState.REVIEWING}, "request changes")
    commit = _str(d, "commit", "request changes")
    if commit != task.commit:
        raise Refused(f"request changes: {commit} is not the latest commit {task.commit}")
    if event.actor in task.authors:
        raise Refused(f"request changes: {event.actor} committed to {task.id}")
    note = _str(d, "note", "request changes")
    return {"state": TaskState.BUILDING, "rounds": task.rounds + 1, "feedback": [*task.feedback, f"{event.actor}: {note}"]}


def _ready(task: Task, event: Event, role: Role) -> Update:
    _need(task, {TaskState.REVIEWING}, "ready")
    missing = missing_gates(task)
    if missing:
        raise Refused(f"ready: {task.id} still needs {', '.join(missing)} on {task.commit}")
    return {"state": TaskState.MERGING}


def _sent_back(task: Task, event: Event, role: Role) -> Update:
    states = AT_WORK_STATES if role == Role.SYSTEM else {TaskState.BLOCKED}
    _need(task, states, "send back")
    reason = _str(event.data, "reason", "send back")
    up: Update = {"state": TaskState.BUILDING, "rounds": task.rounds + 1,
                  "feedback": [*task.feedback, f"{event.actor}: {reason}"], "blocked_by": [], "block_detail": "",
                  "resume_state": None}
    if role == Role.HUMAN:
        up["rounds_base"] = task.rounds + 1
    return up


def _blocked(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, IN_FLIGHT_STATES, "block")
    reasons = d.get("reasons")
    if not isinstance(reasons, list) or not reasons or not all(isinstance(r, str) and r for r in reasons):
        raise Refused("block: needs a non-empty list of reasons")
    return {"state": TaskState.BLOCKED, "blocked_by": list(reasons), "block_detail": str(d.get("detail", ""))[:4000],
            "resume_state": task.state}


def _override(task: Task, event: Event, role: Role) -> Update:
    _need(task, {TaskState.BLOCKED}, "override")
    note = _str(event.data, "note", "override")
    if task.commit is None:
        raise Refused(f"override: {task.id} has no commit to land")
    o = Override(commit=task.commit, actor=event.actor, note=note, event_id=event.id)
    # the human stepped in: a later send-back (a merge conflict) gets the builder's full rounds
    return {"state": TaskState.MERGING, "overrides": [*task.overrides, o], "blocked_by": [], "block_detail": "",
            "resume_state": None, "rounds_base": task.rounds}


def _override_carried(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, {TaskState.CHECKING}, "carry override")
    from_commit = _str(d, "from_commit", "carry override")
    o = carry_override(task, from_commit)
    if from_commit != task.commit:
        why = remerge_refusal(task, from_commit, d.get("remerge"))
        if why:
            raise Refused(f"carry override: {(task.commit or '')[:12]} is not shown to be only a merge of main "
                          f"into {from_commit[:12]}: {why}")
    carried = Override(commit=task.commit, actor=o.actor, note=o.note, event_id=event.id, carried_from=from_commit)
    return {"state": TaskState.MERGING, "overrides": [*task.overrides, carried]}


def _retry(task: Task, event: Event, role: Role) -> Update:
    _need(task, {TaskState.BLOCKED}, "retry")
    back = task.resume_state or TaskState.QUEUED
    return {"state": back, "blocked_by": [], "block_detail": "", "resume_state": None, "rounds_base": task.rounds}


def _merged(task: Task, event: Event, role: Role) -> Update:
    _need(task, {TaskState.MERGING}, "merge")
    if not may_merge(task):
        raise Refused(f"merge: {task.id} needs {', '.join(missing_gates(task))} on {task.commit}")
    merged = _str(event.data, "merged_commit", "merge")
    # invariant 8: main only moves to a commit whose tests passed on exactly that sha
    if not merge_tested_green(task, merged):
        raise Refused(f"merge: {merged} was not tested green as the merge of {task.commit} (what is tested "
                      "is what lands)")
    return {"state": TaskState.DONE, "merged_commit": merged}


def _spend(task: Task, event: Event, role: Role) -> Update:
    usd = event.data.get("usd")
    if not isinstance(usd, (int, float)) or usd < 0:
        raise Refused("spend: needs a non-negative 'usd'")
    if event.data.get("simulated"):
        return {"simulated_usd": round(task.simulated_usd + float(usd), 9)}
    return {"spend_usd": round(task.spend_usd + float(usd), 9)}


def _budget_raised(task: Task, event: Event, role: Role) -> Update:
    usd = event.data.get("usd")
    if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not usd > 0:
        raise Refused("raise budget: 'usd' must be a positive amount")
    if task.budget_usd is None:
        raise Refused(f"raise budget: task {task.id} has no budget of its own (its product's or the day's "
                      "budget is what stops it: raise that one)")
    return {"budget_usd": round(task.budget_usd + float(usd), 9)}


def _edited(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, OPEN_STATES, "edit")
    up: Update = {}
    if "title" in d:
        up["title"] = _str(d, "title", "edit").strip()
    if "body" in d:
        up["body"] = str(d["body"])
    if "priority" in d:
        if isinstance(d["priority"], bool) or not isinstance(d["priority"], int):
            raise Refused("edit: 'priority' must be a whole number")
        up["priority"] = d["priority"]
    if not {"title", "body", "priority"} & set(d):
        raise Refused("edit: nothing to change (title, body or priority)")
    return up


def _open_defect(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    # BUILDING too: the reviewer may have sent the task back while the breaker still worked the same commit
    _need(task, {TaskState.REVIEWING, TaskState.BUILDING}, "open defect")
    commit = _str(d, "commit", "open defect")
    if commit != task.commit:
        raise Refused(f"open defect: {commit} is not the latest commit {task.commit} of {task.id}")
    if event.actor in task.authors:
        raise Refused(f"open defect: {event.actor} committed to {task.id}")
    title = _str(d, "title", "open defect")
    reproduction = _str(d, "reproduction", "open defect")
    kind = d.get("repro_kind")
    if kind not in DEFECT_KINDS:
        raise Refused(f"open defect: kind must be one of {', '.join(DEFECT_KINDS)}, not {kind!r}")
    exit_code = d.get("exit_code")
    if not d.get("timed_out") and (not isinstance(exit_code, int) or exit_code == 0):
        raise Refused("open defect: only a reproduction that failed when the cockpit re-ran it opens a defect")
    defect = Defect(id=f"D{len(task.defects) + 1}", title=title[:300], kind=kind, reproduction=reproduction[:20_000],
                    commit=commit, actor=event.actor, detail=str(d.get("detail", ""))[:4000], event_id=event.id)
    note = (f"{event.actor}: defect {defect.id} on {commit[:12]}: {defect.title}\n"
            f"Reproduction ({kind}):\n{reproduction[:1500]}\nIt fails:\n{defect.detail[-1500:]}")
    return {"defects": [*task.defects, defect], "open_defects": [*task.open_defects, defect.id],
            "feedback": [*task.feedback, note]}


def _close_defect(task: Task, event: Event, role: Role) -> Update:
    d = event.data
    _need(task, OPEN_STATES, "close defect")
    defect_id = _str(d, "defect", "close defect")
    found = next((x for x in task.defects if x.id == defect_id), None)
    if found is None or found.state != DefectState.OPEN:
        raise Refused(f"close defect: {task.id} has no open defect {defect_id!r}")
    if role == Role.SYSTEM:
        # closed only by its own reproduction passing on a later commit than the one it was found on
        commit = _str(d, "commit", "close defect")
        if commit != task.commit or commit == found.commit:
            raise Refused(f"close defect: {commit} is not a later latest commit of {task.id} than {found.commit}")
        if d.get("exit_code") != 0:
            raise Refused(f"close defect: the reproduction of {defect_id} did not pass on {commit}")
    else:
        commit = task.commit
        _str(d, "note", "close defect")
    closed = found.model_copy(update={"state": DefectState.CLOSED, "closed_by": event.actor, "closed_commit": commit})
    return {"defects": [closed if x.id == defect_id else x for x in task.defects],
            "open_defects": [i for i in task.open_defects if i != defect_id]}


_APPLY: dict[str, Callable[[Task, Event, Role], Update]] = {
    Kind.TASK_CREATED: _created,
    Kind.TASK_STARTED: _started,
    Kind.COMMITTED: _committed,
    Kind.SUBMITTED: _submitted,
    Kind.VERDICT: _verdict,
    Kind.CHECKED: _checked,
    Kind.APPROVED: _approved,
    Kind.CHANGES_REQUESTED: _changes_requested,
    Kind.READY: _ready,
    Kind.SENT_BACK: _sent_back,
    Kind.BLOCKED: _blocked,
    Kind.OVERRIDE: _override,
    Kind.OVERRIDE_CARRIED: _override_carried,
    Kind.RETRY: _retry,
    Kind.MERGED: _merged,
    Kind.DEFECT_OPENED: _open_defect,
    Kind.DEFECT_CLOSED: _close_defect,
    Kind.SPEND: _spend,
    Kind.BUDGET_RAISED: _budget_raised,
    Kind.TASK_EDITED: _edited,
}
"""What each task event does to its task: one function per kind of `_ALLOWED`."""
assert set(_APPLY) == set(_ALLOWED), "a task kind without its function, or a function for a kind nobody may send"


def fold(events: list[Event]) -> dict[str, Task]:
    """Rebuild every task from its events (refused events are never in the log)."""
    tasks: dict[str, Task] = {}
    for e in events:
        if not e.is_task_event or e.task_id is None:
            continue
        t = tasks.get(e.task_id)
        tasks[e.task_id] = create(e) if t is None else apply(t, e)
    return tasks
