"""The daily digest ([notify] digest = "18:00"): one message a day summarising it (merged, blocked, spend).

Once the local time passes the digest's hour, the running sender records a `notify.digest` event with the
day's summary; its notice is keyed `digest:<date>` (cockpit.domain.notices), and the outbox's unique key
keeps one per day, whatever restarts or second processes do. A factory that starts after the hour sends
that day's digest at once; a day it did not run at all has none.
"""

from __future__ import annotations

import time

from ..domain.events import Event, Kind
from ..domain.tasks import TaskState
from ..store.store import Store
from ..store import outbox, reads


def day_start(ts: float) -> float:
    """Local midnight of `ts`'s day."""
    lt = time.localtime(ts)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


def due(now: float, at_minutes: int) -> bool:
    """Whether the local time of `now` is at or past the digest's hour."""
    lt = time.localtime(now)
    return lt.tm_hour * 60 + lt.tm_min >= at_minutes


async def day_summary(store: Store, now: float) -> dict:
    """The local day of `now`, from midnight: tasks merged, tasks that blocked, tasks blocked now, real and simulated spend."""
    start = day_start(now)
    merged = await reads.tasks_with_event_since(store, Kind.MERGED.value, start)
    blocked = await reads.tasks_with_event_since(store, Kind.BLOCKED.value, start)
    spend, simulated = await reads.spend_since(store, start)
    blocked_now = sorted(t.id for t in store.tasks() if t.state == TaskState.BLOCKED)
    return {"date": time.strftime("%Y-%m-%d", time.localtime(now)), "merged": merged,
            "blocked": blocked, "blocked_now": blocked_now,
            "spend_usd": round(spend, 4), "simulated_usd": round(simulated, 4)}


def summary_line(s: dict) -> str:
    """The digest in one line: counts first, then which tasks."""
    def ids(xs: list[str]) -> str:
        return f" ({', '.join(xs[:20])}{', …' if len(xs) > 20 else ''})" if xs else ""
    sim = f" (+ ${s['simulated_usd']:.2f} simulated)" if s["simulated_usd"] else ""
    return (f"{s['date']}: {len(s['merged'])} merged{ids(s['merged'])}; {len(s['blocked'])} blocked"
            f"{ids(s['blocked'])}, {len(s['blocked_now'])} still blocked{ids(s['blocked_now'])}; "
            f"spent ${s['spend_usd']:.2f}{sim}")


async def digest_if_due(store: Store, now: float, at_minutes: int) -> bool:
    """Record today's digest if its hour has passed and it is not in the outbox yet; True if recorded now."""
    if not due(now, at_minutes):
        return False
    date = time.strftime("%Y-%m-%d", time.localtime(now))
    if await outbox.has_key(store, f"digest:{date}"):
        return False
    s = await day_summary(store, now)
    await store.append(Event(kind=Kind.DIGEST, actor="system", data={**s, "summary": summary_line(s)}, ts=now))
    return True
