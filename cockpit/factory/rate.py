"""The rate from the store: load the event log, fold it with `cockpit.domain.metrics`, print it.

`cockpit rate [--product P] [--since DATE] [--json]` and, through `report.py`,
`cockpit report --out FILE.html`. Nothing is kept on the side: every figure is
recomputed from the events each time, so it cannot drift from the log.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ..domain import metrics
from ..domain.errors import Refused
from ..domain.events import Kind
from ..domain.metrics import FACTORY, METRIC, METRICS, Rate, ScopeRate
from ..store import reads
from ..store import Store

# high-volume kinds no metric reads; left in the database
_UNREAD_KINDS = tuple(k.value for k in (Kind.AGENT_TEXT, Kind.AGENT_TOOL_RESULT, Kind.SPEND_RESERVED, Kind.GATE_STARTED,
                                        Kind.MODEL_RETRY))
# the kinds whose data a metric reads; the others are counted by kind, actor, task and time alone
_DATA_KINDS = tuple(k.value for k in (Kind.TASK_CREATED, Kind.MODEL_CALL, Kind.SPEND, Kind.SPEND_UNTASKED, Kind.AGENT_STARTED))


@dataclass(slots=True)
class LoggedEvent:
    """An event row as the metrics read it (no validation: the store validated it on the way in)."""

    id: int
    ts: float
    kind: str
    actor: str
    product: str | None
    task_id: str | None
    data: dict[str, Any]


async def load_events(store: Store, *, after_id: int = 0) -> list[LoggedEvent]:
    """Every event a metric reads (after `after_id`), in log order; data only where a metric reads it."""
    rows = await reads.events_for_metrics(store, after_id=after_id, data_kinds=_DATA_KINDS,
                                          unread_kinds=_UNREAD_KINDS)
    out = []
    for id_, ts, kind, actor, product, task_id, data in rows:
        parsed: Any = {}
        if data:
            try:
                parsed = orjson.loads(data)  # several times json's speed: a year of events is ~100k of these
            except orjson.JSONDecodeError:
                try:
                    parsed = json.loads(data)  # what json wrote and orjson refuses (NaN, Infinity)
                except ValueError:
                    parsed = {}
        out.append(LoggedEvent(id_, ts, kind, actor, product, task_id, parsed if isinstance(parsed, dict) else {}))
    return out


class LogReader:
    """The events read so far; each `read` fetches only the ones appended since (a screen that refreshes)."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self.last_id = 0

    async def read(self, store: Store) -> list[LoggedEvent]:
        new = await load_events(store, after_id=self.last_id)
        if new:
            self.events.extend(new)
            self.last_id = new[-1].id
        return self.events


async def compute_rate(store: Store, *, since: float | None = None, until: float | None = None,
                       products: Sequence[str] = (), now: float | None = None,
                       reader: LogReader | None = None) -> Rate:
    """The rate over [since, until] (default: the whole log, up to now), folded off the event loop."""
    events = list(await reader.read(store)) if reader is not None else await load_events(store)
    until = until if until is not None else (now if now is not None else time.time())
    return await asyncio.to_thread(metrics.compute, events, since=since, until=until, products=products)


# --- text ---------------------------------------------------------------------------------------

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, scaled between the smallest and largest; a gap where there is none."""
    real = [v for v in values if v is not None]
    if not real:
        return " " * len(values)
    lo, hi = min(real), max(real)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif hi - lo < 1e-12:
            out.append(_BARS[3])
        else:
            out.append(_BARS[round((v - lo) / (hi - lo) * (len(_BARS) - 1))])
    return "".join(out)


def fmt_value(metric: str, v: float | None) -> str:
    """A value as a person reads it: `$0.84`, `72%`, `3.4h`, `12.5k`."""
    if v is None:
        return "–"
    unit = METRIC[metric].unit
    if unit == "share":
        return f"{v * 100:+.0f} pts" if metric == "lesson_lift" else f"{v * 100:.0f}%"
    if unit == "usd":
        return f"${v:,.2f}" if abs(v) >= 0.1 else f"${v:,.4f}"
    if unit == "hours":
        return f"{v:.1f}h" if v >= 1 else f"{v * 60:.0f}m"
    if unit == "minutes":
        return f"{v:.0f}m"
    if unit == "tokens":
        return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "count":
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.2f}"


CHARTED: tuple[str, ...] = (
    "merged", "lead_time_p50_h", "lead_time_p90_h", "first_pass_yield", "rounds_per_merged", "defects_per_merged",
    "defect_escape_rate", "interventions_per_merged", "blocked_wait_min", "usd_per_merged", "tokens_per_merged",
    "cache_read_ratio", "lessons_per_session", "lesson_lift", "model_calls_per_merged", "tool_calls_per_merged",
    "commits_per_merged", "abandoned")
"""The metrics drawn as charts (the rate screen, the HTML report); the rest are in their tables."""

ARROWS = {"improving": "↑", "worse": "↓", "flat": "→", "rising": "↗", "falling": "↘", "unknown": "·"}
"""Arrows by what a trend means for the factory: ↑ better, ↓ worse (not the sign of the number)."""


def summary_line(rate: ScopeRate | None) -> str:
    """One line for a product pane: the verdict, then the few numbers behind it, with their trend."""
    if rate is None or not rate.totals.get("merged"):
        return "rate: nothing merged yet"
    t = rate.totals
    bits = [rate.verdict.verdict if rate.verdict.verdict != metrics.TOO_FEW else "too few to tell"]
    for m in ("merged", "first_pass_yield", "usd_per_merged", "lead_time_p50_h"):
        label = {"merged": "merged", "first_pass_yield": "1st pass", "usd_per_merged": "$/task",
                 "lead_time_p50_h": "lead"}[m]
        bits.append(f"{label} {fmt_value(m, t.get(m))}{ARROWS[rate.trend[m].direction]}")
    return " · ".join(bits)


def text_report(rate: Rate, *, product: str | None = None) -> list[str]:
    """`cockpit rate`: per scope the verdict line, then every metric: its trend line, total and direction."""
    per = rate.trend_per
    lines = [f"window {_day(rate.since)} → {_day(rate.until)} · trend per {per} · "
             f"↑ improving ↓ worse → flat ↗↘ rising/falling (neither good nor bad)"]
    for name, scope in _scopes(rate, product):
        lines.append("")
        lines.append(f"{'factory' if name == FACTORY else name}: {scope.verdict.line}")
        group = ""
        for m in METRICS:
            if m.group != group:
                group = m.group
                lines.append(f"  [{group}]")
            t = scope.trend[m.name]
            series = scope.series(m.name, per)
            lines.append(f"    {m.label:<20} {sparkline(series):<{max(len(series), 8)}}  "
                         f"{fmt_value(m.name, scope.totals.get(m.name)):>9}  {ARROWS[t.direction]} {t.direction}"
                         + (f" {metrics.describe_change(t)}" if t.change is not None and t.direction != "unknown" else ""))
    return lines


def _scopes(rate: Rate, product: str | None) -> list[tuple[str, ScopeRate]]:
    if product is not None:
        return [(product, rate.scopes[product])]
    return [(FACTORY, rate.factory), *rate.products.items()]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


_RELATIVE = re.compile(r"^(\d+)\s*([dw])$")


def parse_since(text: str, *, now: float | None = None) -> float:
    """`2025-03-01` (local midnight), an ISO date-time, or `30d` / `6w` before now."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text.strip())
    if m:
        return now - int(m.group(1)) * (metrics.WEEK if m.group(2) == "w" else metrics.DAY)
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Refused(f"--since {text!r}: give a date (2025-03-01), a date-time, or a span back from now (30d, 6w)") from None
    return (dt if dt.tzinfo else dt.astimezone()).timestamp()


__all__ = ["CHARTED", "LogReader", "LoggedEvent", "compute_rate", "fmt_value", "load_events", "parse_since",
           "sparkline", "summary_line", "text_report"]
