"""Which committed facts need the human, and what each notice says: a pure function of one event.

The store calls `notices_for` inside the transaction that records the event, so a notice and its event land
together or not at all (the outbox: cockpit.store.schema migration 6). Each notice carries a dedup key: a
receiver that sees the same key twice (a resend after a crash) shows it once.
"""

from __future__ import annotations

import shlex
import time

from pydantic import BaseModel, ConfigDict

from .events import Event, Kind
from .visible import visible_line


class Notice(BaseModel):
    """One message for the human: what happened, where, and the command that acts on it."""

    model_config = ConfigDict(frozen=True)

    key: str
    kind: str
    product: str | None = None
    task_id: str | None = None
    reason: str
    actions: list[str]

    def text(self) -> str:
        where = " ".join(p for p in (self.product, self.task_id) if p)
        lines = [f"[{where}] {self.kind}: {self.reason}" if where else f"{self.kind}: {self.reason}"]
        lines += [f"  {a}" for a in self.actions]
        return "\n".join(lines)


def notices_for(event: Event) -> list[Notice]:
    """The notices a committed event produces (none for most): a task blocked, with its reason.

    `event.id` must be set: the key names the event, so a task that blocks again later is a new notice while
    a resend of this one is not. Agent text in a reason is content: made visible, one line, never markup."""
    if event.id is None:
        raise ValueError("notices_for: the event has no id yet (call it once the store assigned one)")
    if event.kind == Kind.BLOCKED and event.task_id:
        reasons = [visible_line(r) for r in event.data.get("reasons") or []]
        reason = "; ".join(r for r in reasons if r)[:300] or "blocked"
        tid = shlex.quote(event.task_id)
        return [Notice(
            key=f"blocked:{event.task_id}:{event.id}", kind="blocked", product=event.product,
            task_id=event.task_id, reason=reason,
            actions=[f'cockpit send-back {tid} -m "…"', f'cockpit approve {tid} --note "…"',
                     f"cockpit retry {tid}"],
        )]
    if event.kind in (Kind.SPEND, Kind.SPEND_UNTASKED) and event.data.get("budget_crossed"):
        return [_budget_notice(event, c) for c in event.data["budget_crossed"]]
    return []


_RAISE_FLAG = {"product": "--product {key}", "day": "--day", "factory": "--factory"}


def _budget_notice(event: Event, c: dict) -> Notice:
    """A budget past 80 % or 100 %: keyed by budget and period (a day budget's key is its date), so once each."""
    scope, key, pct = str(c["scope"]), str(c["key"]), int(c["pct"])
    name = {"product": f"product {key} budget", "day": f"day budget ({key})", "factory": "factory budget"}.get(
        scope, f"{scope} budget")
    what = "spent: new model calls are refused" if pct >= 100 else "used"
    flag = _RAISE_FLAG.get(scope, "").format(key=shlex.quote(key))
    return Notice(
        key=f"budget:{scope}:{key}:{pct}", kind="budget", product=key if scope == "product" else None,
        task_id=None, reason=visible_line(f"{name} {pct}% {what}: ${c['spent_usd']:.2f} of ${c['limit_usd']:.2f}"),
        actions=[f"cockpit budget raise {flag} --usd AMOUNT", "cockpit spend"])


def parse_quiet_hours(spec: str) -> tuple[int, int]:
    """"22:00-07:00" -> (1320, 420), minutes of the local day; ValueError saying the expected form."""
    try:
        a, b = spec.split("-")
        start, end = (int(h) * 60 + int(m) for h, m in (x.strip().split(":") for x in (a, b)))
    except ValueError:
        raise ValueError(f"quiet_hours {spec!r}: write it as HH:MM-HH:MM, e.g. \"22:00-07:00\"") from None
    if not (0 <= start < 1440 and 0 <= end < 1440) or start == end:
        raise ValueError(f"quiet_hours {spec!r}: hours 00-23, minutes 00-59, start and end different")
    return start, end


def in_quiet_hours(ts: float, span: tuple[int, int]) -> bool:
    """Whether the local time of `ts` is in [start, end) (crossing midnight when start > end)."""
    lt = time.localtime(ts)
    m, (start, end) = lt.tm_hour * 60 + lt.tm_min, span
    return start <= m < end if start < end else (m >= start or m < end)
