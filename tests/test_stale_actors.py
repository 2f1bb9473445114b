"""Random attack on a REAL store file across restarts: stale agents and the human try everything, in any order.

A hypothesis state machine drives one store file through the real writer (the domain
validates inside it). It restarts the "factory" by closing and re-opening the file; an
agent from before the restart keeps acting on the commit it last saw (a stale session that
was never told). The human overrides, retries, sends back and approves whenever it likes.
A helpful `advance` rule walks the task forward the legitimate way, so `done` is reached.

Checked after every step, from the log on disk, by a shadow that reads accepted events only:
- `done` only if, for the latest commit when it merged: tests passed and someone who pushed
  no commit approved it, or a human overrode that very commit; and the merged sha is a
  passing merge of that commit;
- a refused action changes nothing (same projection, one `action.refused` event more);
- after a re-open, the projection equals the one before and the fold of the log.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from cockpit.domain import Event, Kind, Refused, TaskState, fold
from cockpit.store import Store

AGENTS = ["builder-1", "builder-2", "reviewer-1", "reviewer-2", "breaker-1"]
HUMAN = "human:you"
ACTORS = [*AGENTS, "system", HUMAN]
KINDS = [Kind.TASK_STARTED, Kind.COMMITTED, Kind.SUBMITTED, Kind.VERDICT, Kind.CHECKED, Kind.APPROVED,
         Kind.CHANGES_REQUESTED, Kind.READY, Kind.SENT_BACK, Kind.BLOCKED, Kind.OVERRIDE, Kind.RETRY,
         Kind.MERGED, Kind.SPEND]
WHICH = ["latest", "stale", "first", "unknown"]
STATS = {"done": 0, "done_by_override": 0, "refused": 0, "accepted": 0, "restarts": 0, "stale_attempts": 0,
         "stale_refused": 0}
_sha = itertools.count(1)


def fresh_sha() -> str:
    return f"{next(_sha):040x}"


class Shadow:
    """The gates as this test understands them, from the accepted events of one task."""

    def __init__(self) -> None:
        self.commits: list[str] = []
        self.authors: set[str] = set()
        self.tests: dict[str, str] = {}
        self.approvals: list[tuple[str, str]] = []
        self.overrides: set[str] = set()
        self.merges: dict[str, tuple[str, str]] = {}  # merged sha -> (source, outcome)

    @property
    def latest(self) -> str | None:
        return self.commits[-1] if self.commits else None

    def may_land(self, merged: str) -> bool:
        c = self.latest
        gates = self.tests.get(c) == "pass" and any(a == c and who not in self.authors for a, who in self.approvals)
        tested = self.merges.get(merged) == (c, "pass")
        return c is not None and tested and (gates or c in self.overrides)

    def record(self, e: Event) -> None:
        d = e.data
        if e.kind == Kind.COMMITTED:
            self.commits.append(d["sha"])
            self.authors.add(e.actor)
        elif e.kind == Kind.VERDICT and d["gate"] == "tests":
            self.tests[d["commit"]] = d["outcome"]
        elif e.kind == Kind.VERDICT and d["gate"] == "merge":
            self.merges[d["commit"]] = (d["source"], d["outcome"])
        elif e.kind == Kind.APPROVED:
            self.approvals.append((d["commit"], e.actor))
        elif e.kind == Kind.OVERRIDE:
            self.overrides.add(self.latest)


def check_log(events: list[Event]) -> None:
    """Every `task.merged` in the log was allowed by the shadow's reading of the events before it."""
    shadows: dict[str, Shadow] = {}
    for e in events:
        if not e.is_task_event or e.task_id is None:
            continue
        sh = shadows.setdefault(e.task_id, Shadow())
        if e.kind == Kind.MERGED:
            assert sh.may_land(e.data["merged_commit"]), f"{e.task_id} reached done without its gates: {e}"
        sh.record(e)


class StaleActors(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="cockpit-stale-"))
        self.path = self.dir / "cockpit.db"
        self.loop = asyncio.new_event_loop()
        self.store = self.run(Store.open(self.path))
        created = self.run(self.store.append(Event(kind=Kind.TASK_CREATED, actor=HUMAN, product="p",
                                                   data={"title": "t"})))
        self.tid = created.task_id
        self.seen: dict[str, str | None] = {}  # agent -> the latest commit when it last saw the task
        self.before_restart: dict[str, str | None] = {}  # what each agent had seen when the factory went down
        self.pending_merge: str | None = None

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def task(self):
        return self.store.task(self.tid)

    def commit_for(self, which: str, actor: str) -> str:
        t = self.task
        if which == "latest" and t.commit:
            return t.commit
        if which == "stale" and self.before_restart.get(actor, self.seen.get(actor)):
            return self.before_restart.get(actor, self.seen.get(actor))  # type: ignore[return-value]
        if which == "first" and t.commits:
            return t.commits[0]
        return fresh_sha()

    def data_for(self, kind: str, actor: str, which: str, outcome: str, gate: str) -> dict:
        c = self.commit_for(which, actor)
        return {
            Kind.TASK_STARTED: {"agent": "builder-1"},
            Kind.COMMITTED: {"sha": fresh_sha()},
            Kind.SUBMITTED: {"commit": c},
            Kind.VERDICT: ({"gate": "tests", "commit": c, "outcome": outcome} if gate == "tests" else
                           {"gate": "merge", "commit": fresh_sha(), "source": c, "base": "b" * 40, "outcome": outcome}),
            Kind.APPROVED: {"commit": c, "note": "ok"},
            Kind.CHANGES_REQUESTED: {"commit": c, "note": "again"},
            Kind.SENT_BACK: {"reason": "again"},
            Kind.BLOCKED: {"reasons": ["tests"]},
            Kind.OVERRIDE: {"note": "I checked it by hand"},
            Kind.MERGED: {"merged_commit": self.pending_merge if which == "latest" and self.pending_merge
                          else fresh_sha()},
            Kind.SPEND: {"usd": 0.01},
        }.get(kind, {})

    def attempt(self, actor: str, kind: str, data: dict, *, stale: bool = False) -> bool:
        before = self.task
        n = self.store.last_event_id
        STATS["stale_attempts"] += stale
        try:
            ev = self.run(self.store.append(Event(kind=kind, actor=actor, product="p", task_id=self.tid, data=data)))
        except Refused:
            STATS["refused"] += 1
            STATS["stale_refused"] += stale
            assert self.task == before, f"refused {kind} by {actor} changed the task"
            refusals = self.run(self.store.events(after_id=n))
            assert [e.kind for e in refusals] == [Kind.REFUSED] and refusals[0].data["kind"] == kind
            return False
        STATS["accepted"] += 1
        if kind == Kind.VERDICT and data["gate"] == "merge" and data["outcome"] == "pass":
            self.pending_merge = data["commit"]
        if actor in AGENTS:
            self.seen[actor] = self.task.commit
        assert ev.id == n + 1
        return True

    # --- rules -----------------------------------------------------------------------------

    @rule(actor=st.sampled_from(ACTORS), kind=st.sampled_from(KINDS), which=st.sampled_from(WHICH),
          outcome=st.sampled_from(["pass", "fail"]), gate=st.sampled_from(["tests", "merge"]))
    def anyone_tries_anything(self, actor, kind, which, outcome, gate):
        self.attempt(actor, kind, self.data_for(kind, actor, which, outcome, gate))

    @precondition(lambda self: bool(self.before_restart))
    @rule(data=st.data(), kind=st.sampled_from([Kind.APPROVED, Kind.CHANGES_REQUESTED, Kind.SUBMITTED,
                                                Kind.COMMITTED]))
    def an_agent_from_before_the_restart_acts_on_what_it_saw(self, data, kind):
        actor = data.draw(st.sampled_from(sorted(self.before_restart)))
        self.attempt(actor, kind, self.data_for(kind, actor, "stale", "pass", "tests"), stale=True)

    @rule(kind=st.sampled_from([Kind.OVERRIDE, Kind.RETRY, Kind.SENT_BACK, Kind.APPROVED, Kind.CHANGES_REQUESTED]),
          which=st.sampled_from(WHICH))
    def the_human_steps_in(self, kind, which):
        self.attempt(HUMAN, kind, self.data_for(kind, HUMAN, which, "pass", "tests"))

    @rule()
    def restart(self):
        """Close and re-open the file; every agent's session is now from before the restart."""
        before = self.task
        self.before_restart = {a: c for a, c in self.seen.items() if c}
        self.run(self.store.close())
        self.store = self.run(Store.open(self.path))
        STATS["restarts"] += 1
        assert self.task == before, "a restart changed the task"
        assert fold(self.run(self.store.events()))[self.tid] == before

    @rule(override=st.booleans())
    def advance(self, override):
        """The legitimate next step, so the interesting states are reached."""
        t = self.task
        s = t.state
        if override and s == TaskState.CHECKING:  # the gate fails: the task waits for the human
            self.attempt("system", Kind.BLOCKED, {"reasons": ["tests"]})
        elif s == TaskState.QUEUED:
            self.attempt("system", Kind.TASK_STARTED, {"agent": "builder-1"})
        elif s == TaskState.BUILDING:
            if t.commit is None:
                self.attempt("builder-1", Kind.COMMITTED, {"sha": fresh_sha()})
            else:
                self.attempt("builder-1", Kind.SUBMITTED, {"commit": t.commit})
        elif s == TaskState.CHECKING:
            if not any(v.gate == "tests" and v.commit == t.commit and v.outcome == "pass" for v in t.verdicts):
                self.attempt("system", Kind.VERDICT, {"gate": "tests", "commit": t.commit, "outcome": "pass"})
            else:
                self.attempt("system", Kind.CHECKED, {})
        elif s == TaskState.REVIEWING:
            reviewer = next(a for a in ("reviewer-1", "reviewer-2") if a not in t.authors)
            if not any(a.commit == t.commit and a.actor not in t.authors for a in t.approvals):
                self.attempt(reviewer, Kind.APPROVED, {"commit": t.commit, "note": "ok"})
            else:
                self.attempt("system", Kind.READY, {})
        elif s == TaskState.MERGING:
            if self.pending_merge is None or not any(
                    v.gate == "merge" and v.commit == self.pending_merge and v.source == t.commit for v in t.verdicts):
                self.attempt("system", Kind.VERDICT, {"gate": "merge", "commit": fresh_sha(), "source": t.commit,
                                                      "base": "b" * 40, "outcome": "pass"})
            else:
                overridden = any(o.commit == t.commit for o in t.overrides)
                if self.attempt("system", Kind.MERGED, {"merged_commit": self.pending_merge}):
                    STATS["done"] += 1
                    STATS["done_by_override"] += overridden
        elif s == TaskState.BLOCKED:
            if override and t.commit:
                self.attempt(HUMAN, Kind.OVERRIDE, {"note": "I checked it by hand"})
            else:
                self.attempt(HUMAN, Kind.RETRY, {})

    @invariant()
    def done_only_through_the_gates(self):
        check_log(self.run(self.store.events()))


def test_stale_agents_and_the_human_cannot_land_work_without_its_gates():
    # derandomized: the walk is the same every run, so the coverage checks below cannot flip (a random walk
    # once made no refused stale attempt in CI); the invariants still hold on every one of its steps
    run_state_machine_as_test(StaleActors, settings=settings(
        max_examples=40, stateful_step_count=40, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    # the random walk reached the interesting places, and refused plenty on the way
    assert STATS["done"] > STATS["done_by_override"] > 0 and STATS["refused"] > 0 and STATS["restarts"] > 0, STATS
    assert STATS["stale_attempts"] >= STATS["stale_refused"] > 0, STATS
