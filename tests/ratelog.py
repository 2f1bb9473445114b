"""Hand-built event logs for the rate tests: real `Event`s, in log order, at times we choose.

Every task path here is one the domain accepts (the tests fold the task events through
`cockpit.domain.tasks.fold` to prove it), so the logs are ones the store could hold.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

from cockpit.domain import Event

HUMAN = "human:you"
BASE = datetime(2025, 3, 3, tzinfo=timezone.utc).timestamp()  # a Monday, 00:00 UTC
HOUR = 3600.0
WEEK_H = 7 * 24


class Log:
    """Append events at the current clock (`at(hours after BASE)`); ids follow the order of appending."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.t = BASE
        self._calls = itertools.count(1)
        self._shas = itertools.count(1)

    def at(self, hours: float) -> "Log":
        self.t = BASE + hours * HOUR
        return self

    def later(self, minutes: float = 1) -> "Log":
        self.t += minutes * 60
        return self

    def add(self, kind: str, actor: str, product: str | None, task: str | None = None, /, **data) -> Event:
        e = Event(id=len(self.events) + 1, ts=self.t, kind=kind, actor=actor, product=product, task_id=task, data=data)
        self.events.append(e)
        return e

    def sha(self) -> str:
        return f"c{next(self._shas):07d}"

    # --- building blocks ----------------------------------------------------------------

    def call(self, actor: str, product: str, task: str | None, usd: float, usage: dict, *, lessons=None,
             settled: bool = True, settled_usd: float | None = None) -> None:
        """One model call: the ledger's settlement (if `settled`), then the call's own event."""
        cid = f"call_{next(self._calls)}"
        if settled:
            self.add("spend.settled", "system", product, task, call_id=cid, usage=usage,
                     usd=usd if settled_usd is None else settled_usd, state="settled")
        extra = {} if lessons is None else {"lesson_ids": list(lessons)}
        self.add("model.call", actor, product, task, call_id=cid, model="claude-sonnet-5-5", usd=usd, usage=usage,
                 **extra)

    def session(self, actor: str, role: str, product: str, task: str, *, calls: int = 1, usd: float = 0.0,
                usage: dict | None = None, lessons=None, tools: int = 0, settled: bool = True) -> None:
        self.add("agent.started", actor, product, task, agent=actor, role=role)
        for _ in range(calls):
            self.call(actor, product, task, usd, usage or {}, lessons=lessons, settled=settled)
        for _ in range(tools):
            self.add("agent.tool", actor, product, task, agent=actor, name="read_file", input={"path": "x.py"})
        self.add("agent.finished", actor, product, task, agent=actor, reason="called submit")

    def build(self, product: str, task: str, builder: str, **session) -> str:
        """A builder session that commits once and submits."""
        sha = self.sha()
        self.session(builder, "builder", product, task, **session)
        self.add("task.committed", builder, product, task, sha=sha)
        self.add("task.submitted", builder, product, task, commit=sha)
        return sha

    def verdict(self, product: str, task: str, sha: str, outcome: str) -> None:
        self.add("gate.verdict", "system", product, task, gate="tests", commit=sha, outcome=outcome)

    def land(self, product: str, task: str, sha: str, *, reviewer: str = "reviewer-1", merge_at: float | None = None,
             review: dict | None = None) -> None:
        """Tests pass, checked, reviewed and approved, ready, merge-tested, merged (at `merge_at` hours if given)."""
        self.verdict(product, task, sha, "pass")
        self.add("task.checked", "system", product, task)
        if review is not None:
            self.session(reviewer, "reviewer", product, task, **review)
        self.add("review.approved", reviewer, product, task, commit=sha, note="ok")
        self.add("task.ready", "system", product, task)
        merged = "m" + sha
        self.add("gate.verdict", "system", product, task, gate="merge", commit=merged, source=sha, base="main0",
                 outcome="pass")
        if merge_at is not None:
            self.at(merge_at)
        self.add("task.merged", "system", product, task, merged_commit=merged)

    def task(self, product: str, task: str, *, at: float, lead_h: float, path: str = "first", usd: float = 0.0,
             builder: str = "builder-1", lessons=None, **created) -> None:
        """A whole task from queued to merged `lead_h` hours later, by one of three paths:
        `first` (first pass), `system` (tests fail, sent back by the system, then pass) or
        `human` (tests fail, blocked, a human sends it back 30 minutes later, then pass)."""
        self.at(at).add("task.created", HUMAN, product, task, title=f"{task} of {product}", **created)
        self.later().add("task.started", "system", product, task, agent=builder)
        sha = self.later().build(product, task, builder, usd=usd, lessons=lessons)
        if path != "first":
            self.later().verdict(product, task, sha, "fail")
            if path == "system":
                self.later().add("task.sent_back", "system", product, task, reason="tests failed", gate="tests")
            else:
                self.later().add("task.blocked", "system", product, task, reasons=["tests"], detail="2 failed")
                self.later(30).add("task.sent_back", HUMAN, product, task, reason="use Decimal")
            sha = self.later().build(product, task, builder, lessons=lessons)
        self.later().land(product, task, sha, merge_at=at + lead_h)
