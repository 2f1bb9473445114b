"""The rate: does the factory compound, or does it only make motion? A pure fold of the event log.

`compute(events, since=, until=)` reads nothing but events (no bookkeeping of its own that
could drift from the log) and returns, per product and for the whole factory, the metrics
of `METRICS` over the window, per day and per (rolling) week, the trend of each metric and
a verdict per product.

How events are counted, so every figure can be checked by hand:
- A task is *queued* at its `task.created` and *merged* at its first `task.merged`.
- Cohort metrics belong to the period a task merged in: lead time, first-pass yield, rounds.
  A merged task passed first time if, before it merged, nothing sent it back (`task.sent_back`,
  `review.changes_requested`), no defect was opened on it, it never blocked and no human acted
  on it. Its rounds are 1 + the times it was sent back.
- Flow metrics belong to the period the event happened in, and "per merged task" divides them by
  the tasks merged in that same period: cost, tokens, model and tool calls, commits, human
  interventions, defects. Work spent on tasks that never land shows up here, as it should.
- Defects: `defect.opened` is one the breaker found; one found after merge is a `task.reopened`
  of a merged task, or a task created with `fixes: "T7"` (or a list) naming a task merged before.
- A human intervention is an event by a `human:*` actor of a kind in `HUMAN_KINDS` (or any
  `human.*` kind). A blocked item waits from its `task.blocked` until a human acts on it or it
  leaves the blocked state (still waiting at the end of the window: until then), counted in the
  period it blocked in.
- Cost per model call, by `call_id`: the sum of its `spend.settled*` events (what the ledger
  settled, broken streams included), else the `model.call` event's own `usd`/`usage`.
- A session runs from `agent.started` to `agent.finished`/`agent.stopped` of the same actor
  (a `model.call` with no open session starts one). It recalled the lessons named by the
  `lesson_ids` of its model calls. A builder session *passed first time* when the next outcome of
  its task after the session started is the merge, not a send-back, a block or a defect.
- Abandoned: a started task that never merged and either has an explicit abandon event
  (`ABANDON_KINDS`) or no task event for `abandon_days` before the end of the window; counted
  in the period of its last task event.
- A product whose tasks were created with `demo_history: true` is flagged `demo`: simulated, not recorded.
- Weeks are rolling 7-day periods that end at `until` (the newest is always a whole week);
  days are calendar days in `tz` (None: local time).

Trend: a least-squares slope over the periods (weeks when there are at least 3, else days),
each period weighted by the tasks merged in it for per-merged-task metrics; counts are scaled
to the part of a period the product was alive in. A metric whose fitted change over the window
is under 10% of where it started (of its mean if it started near zero; 5 points for shares)
is flat. The verdict weighs the `CORE` metrics: improving minus worse >= 2 is "compounding",
worse minus improving >= 2 is "worse", else "flat"; under `MIN_MERGED` merged tasks or
`MIN_PERIODS` periods with merges it is "too few tasks to tell" (what it leans to is still given).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol

from .events import Kind

DAY = 86400.0
WEEK = 7 * DAY

FACTORY = "*"
"""The scope key of the whole factory in `Rate.scopes`."""

MIN_MERGED = 8
MIN_PERIODS = 3
REL_THRESHOLD = 0.10
SHARE_THRESHOLD = 0.05
ABANDON_DAYS = 7.0

COMPOUNDING, FLAT, WORSE, TOO_FEW = "compounding", "flat", "worse", "too few tasks to tell"

SPEND_KINDS = frozenset({Kind.SPEND, Kind.SPEND_UNTASKED})
ABANDON_KINDS = frozenset({Kind.TASK_ABANDONED, Kind.TASK_CANCELLED, Kind.TASK_DROPPED})
HUMAN_KINDS = frozenset({Kind.OVERRIDE, Kind.RETRY, Kind.SENT_BACK, Kind.APPROVED, Kind.CHANGES_REQUESTED,
                         Kind.DEFECT_CLOSED, Kind.BUDGET_RAISED, Kind.TASK_REOPENED, *ABANDON_KINDS})
UNBLOCK_KINDS = frozenset({Kind.OVERRIDE, Kind.RETRY, Kind.SENT_BACK, Kind.MERGED, *ABANDON_KINDS})
# task events that show a task is alive (notes and agent chatter do not)
TASK_ACTIVITY = frozenset({Kind.TASK_CREATED, Kind.TASK_STARTED, Kind.COMMITTED, Kind.SUBMITTED, Kind.VERDICT,
                           Kind.CHECKED, Kind.APPROVED, Kind.CHANGES_REQUESTED, Kind.READY, Kind.SENT_BACK,
                           Kind.BLOCKED, Kind.OVERRIDE, Kind.RETRY, Kind.MERGED, Kind.DEFECT_OPENED,
                           Kind.DEFECT_CLOSED, Kind.TASK_REOPENED, *ABANDON_KINDS})


class EventLike(Protocol):
    id: int | None
    ts: float
    kind: str
    actor: str
    product: str | None
    task_id: str | None
    data: dict[str, Any]


Better = Literal["up", "down"] | None


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str  # count, hours, minutes, usd, tokens, ratio, share
    better: Better
    group: str
    help: str
    per_merged: bool = False  # a ratio to the tasks merged in the period: its trend is weighted by them
    extensive: bool = False  # a count over the period: its trend is scaled to the part of the period covered


def _m(name: str, label: str, unit: str, better: Better, group: str, help: str, **kw: bool) -> Metric:
    return Metric(name, label, unit, better, group, help, **kw)


METRICS: tuple[Metric, ...] = (
    _m("merged", "merged", "count", "up", "throughput", "tasks merged", extensive=True),
    _m("lead_time_p50_h", "lead p50", "hours", "down", "throughput", "queued → merged, median, hours", per_merged=True),
    _m("lead_time_p90_h", "lead p90", "hours", "down", "throughput", "queued → merged, 90th percentile, hours",
       per_merged=True),
    _m("first_pass_yield", "first pass", "share", "up", "quality",
       "merged tasks that needed no second round, no defect fix and no human", per_merged=True),
    _m("rounds_per_merged", "rounds/task", "ratio", "down", "rework", "builder rounds per merged task (1 = first pass)",
       per_merged=True),
    _m("defects_per_merged", "defects/task", "ratio", "down", "rework",
       "defects found (by the breaker or after merge) per merged task", per_merged=True),
    _m("defects_breaker", "breaker found", "count", None, "rework", "defects the breaker found (reproduced)",
       extensive=True),
    _m("defects_after_merge", "after merge", "count", "down", "rework",
       "defects found after merge (reopened, or a follow-up task that fixes it)", extensive=True),
    _m("defect_escape_rate", "escaped", "share", "down", "rework", "share of defects found only after merge"),
    _m("interventions", "human acts", "count", "down", "human", "human interventions", extensive=True),
    _m("interventions_per_merged", "human/task", "ratio", "down", "human", "human interventions per merged task",
       per_merged=True),
    _m("blocked_items", "blocked", "count", "down", "human", "times a task blocked and waited for the human",
       extensive=True),
    _m("blocked_wait_min", "wait (min)", "minutes", "down", "human", "minutes a blocked item waited, mean"),
    _m("usd", "spend", "usd", None, "cost",
       "dollars spent on model calls (real money: the offline scripted model's simulated spend is left out)",
       extensive=True),
    _m("usd_per_merged", "$/task", "usd", "down", "cost", "dollars per merged task", per_merged=True),
    _m("tokens", "tokens", "tokens", None, "cost", "tokens (input, output, cache writes and reads)", extensive=True),
    _m("tokens_per_merged", "tokens/task", "tokens", "down", "cost", "tokens per merged task", per_merged=True),
    _m("cache_read_ratio", "cache read", "share", "up", "cost", "share of input tokens read from the prompt cache"),
    _m("sessions", "sessions", "count", None, "memory", "agent sessions", extensive=True),
    _m("lessons_per_session", "lessons/session", "ratio", "up", "memory", "lessons recalled per agent session"),
    _m("session_fpy_with_lessons", "1st pass w/ lessons", "share", "up", "memory",
       "builder sessions that recalled a lesson and passed first time"),
    _m("session_fpy_without_lessons", "1st pass w/o", "share", None, "memory",
       "builder sessions that recalled none and passed first time"),
    _m("lesson_lift", "lesson lift", "share", "up", "memory",
       "first-pass share with lessons minus without (points)"),
    _m("model_calls", "model calls", "count", None, "motion", "model calls", extensive=True),
    _m("model_calls_per_merged", "calls/task", "ratio", "down", "motion", "model calls per merged task", per_merged=True),
    _m("tool_calls", "tool calls", "count", None, "motion", "agent tool calls", extensive=True),
    _m("tool_calls_per_merged", "tools/task", "ratio", "down", "motion", "tool calls per merged task", per_merged=True),
    _m("commits", "commits", "count", None, "motion", "commits pushed by builders", extensive=True),
    _m("commits_per_merged", "commits/task", "ratio", "down", "motion", "commits per merged task", per_merged=True),
    _m("abandoned", "abandoned", "count", "down", "motion", "started tasks dropped without merging", extensive=True),
)
METRIC: dict[str, Metric] = {m.name: m for m in METRICS}

SIGNED = frozenset({"lesson_lift"})
"""Metrics that may be negative; the others are clamped at zero."""

CORE: tuple[str, ...] = ("merged", "lead_time_p50_h", "first_pass_yield", "usd_per_merged",
                         "interventions_per_merged", "rounds_per_merged")
"""The metrics the verdict weighs: speed, quality, cost and the human's load."""


# --- results --------------------------------------------------------------------------------


@dataclass
class Period:
    key: str  # "2025-03-04" (day) or the start date of a rolling week
    start: float
    end: float
    values: dict[str, float | None]
    coverage: float = 1.0  # share of the period inside the scope's life in the window

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.key, "start": self.start, "end": self.end, "coverage": round(self.coverage, 4),
                **{k: _clean(v) for k, v in self.values.items()}}


@dataclass
class Trend:
    metric: str
    per: str  # "week" or "day"
    points: int
    slope: float | None  # change per period
    start: float | None  # the fitted line at the first and last point
    end: float | None
    change: float | None  # relative (or in points, for shares)
    direction: str  # improving, worse, flat, rising, falling, unknown

    def to_dict(self) -> dict[str, Any]:
        return {"per": self.per, "points": self.points, "slope": _clean(self.slope), "from": _clean(self.start),
                "to": _clean(self.end), "change": _clean(self.change), "direction": self.direction}


@dataclass
class Verdict:
    verdict: str  # compounding, flat, worse, or TOO_FEW
    leaning: str  # what the numbers say, even when the sample is too small
    caveat: str | None
    improving: list[str]
    worse: list[str]
    flat: list[str]
    merged: int
    periods_with_merges: int
    line: str  # the verdict with the numbers behind it, one line

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "leaning": self.leaning, "caveat": self.caveat, "improving": self.improving,
                "worse": self.worse, "flat": self.flat, "merged": self.merged,
                "periods_with_merges": self.periods_with_merges, "line": self.line}


@dataclass
class ScopeRate:
    name: str  # a product, or FACTORY
    totals: dict[str, float | None]
    days: list[Period]
    weeks: list[Period]
    trend: dict[str, Trend]
    verdict: Verdict
    demo: bool = False  # its events are marked `demo_history`: simulated, not recorded

    def series(self, metric: str, per: str = "week") -> list[float | None]:
        return [p.values.get(metric) for p in (self.weeks if per == "week" else self.days)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "demo_history": self.demo, "totals": {k: _clean(v) for k, v in self.totals.items()},
                "verdict": self.verdict.to_dict(), "trend": {k: t.to_dict() for k, t in self.trend.items()},
                "weekly": [p.to_dict() for p in self.weeks], "daily": [p.to_dict() for p in self.days]}


@dataclass
class Rate:
    since: float
    until: float
    trend_per: str
    scopes: dict[str, ScopeRate]  # product name -> rate; FACTORY -> the whole factory

    @property
    def factory(self) -> ScopeRate:
        return self.scopes[FACTORY]

    @property
    def products(self) -> dict[str, ScopeRate]:
        return {k: v for k, v in self.scopes.items() if k != FACTORY}

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": {"since": self.since, "until": self.until, "since_iso": _iso(self.since),
                       "until_iso": _iso(self.until), "days": round((self.until - self.since) / DAY, 3),
                       "trend_per": self.trend_per},
            "metrics": {m.name: {"label": m.label, "unit": m.unit, "better": m.better, "group": m.group, "help": m.help}
                        for m in METRICS},
            "core": list(CORE),
            "factory": self.factory.to_dict(),
            "products": {k: v.to_dict() for k, v in self.products.items()},
        }


def _clean(v: float | None) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(float(v), 6)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


# --- small statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float | None:
    """Linear interpolation between closest ranks (numpy's default): p50 of 1,2,3,4 is 2.5, p90 is 3.7."""
    if not values:
        return None
    s = values if presorted else sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def weighted_slope(xs: Sequence[float], ys: Sequence[float], ws: Sequence[float] | None = None) -> tuple[float, float]:
    """(slope, intercept) of the weighted least-squares line; needs two distinct xs."""
    ws = ws or [1.0] * len(xs)
    sw = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs, strict=True)) / sw
    my = sum(w * y for w, y in zip(ws, ys, strict=True)) / sw
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs, strict=True))
    sxy = sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    return slope, my - slope * mx


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


# --- the fold -------------------------------------------------------------------------------


@dataclass
class _Acc:
    """Raw sums of one scope over one period (or the whole window)."""

    merged: int = 0
    lead_h: list[float] = field(default_factory=list)
    first_pass: int = 0
    rounds: int = 0
    defects_breaker: int = 0
    defects_after: int = 0
    interventions: int = 0
    blocked: int = 0
    waits_min: list[float] = field(default_factory=list)
    usd: float = 0.0
    tokens: int = 0
    cache_read: int = 0
    input_all: int = 0
    sessions: int = 0
    lessons: int = 0
    with_pass: int = 0
    with_n: int = 0
    without_pass: int = 0
    without_n: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    commits: int = 0
    abandoned: int = 0

    def values(self) -> dict[str, float | None]:
        n = self.merged
        leads = sorted(self.lead_h)
        fpy_with, fpy_without = _div(self.with_pass, self.with_n), _div(self.without_pass, self.without_n)
        found = self.defects_breaker + self.defects_after
        return {
            "merged": n,
            "lead_time_p50_h": percentile(leads, 50, presorted=True),
            "lead_time_p90_h": percentile(leads, 90, presorted=True),
            "first_pass_yield": _div(self.first_pass, n),
            "rounds_per_merged": _div(self.rounds, n),
            "defects_per_merged": _div(found, n),
            "defects_breaker": self.defects_breaker,
            "defects_after_merge": self.defects_after,
            "defect_escape_rate": _div(self.defects_after, found),
            "interventions": self.interventions,
            "interventions_per_merged": _div(self.interventions, n),
            "blocked_items": self.blocked,
            "blocked_wait_min": _div(sum(self.waits_min), len(self.waits_min)),
            "usd": self.usd,
            "usd_per_merged": _div(self.usd, n),
            "tokens": self.tokens,
            "tokens_per_merged": _div(self.tokens, n),
            "cache_read_ratio": _div(self.cache_read, self.input_all),
            "sessions": self.sessions,
            "lessons_per_session": _div(self.lessons, self.sessions),
            "session_fpy_with_lessons": fpy_with,
            "session_fpy_without_lessons": fpy_without,
            "lesson_lift": None if fpy_with is None or fpy_without is None else fpy_with - fpy_without,
            "model_calls": self.model_calls,
            "model_calls_per_merged": _div(self.model_calls, n),
            "tool_calls": self.tool_calls,
            "tool_calls_per_merged": _div(self.tool_calls, n),
            "commits": self.commits,
            "commits_per_merged": _div(self.commits, n),
            "abandoned": self.abandoned,
        }


@dataclass
class _TaskFacts:
    id: str
    product: str | None
    created_ts: float | None = None
    started: bool = False
    merged_ts: float | None = None
    returns: int = 0
    humans: int = 0
    defects: int = 0
    blocks: int = 0
    last_ts: float = 0.0
    abandoned_ts: float | None = None
    block_open: float | None = None
    outcomes: list[tuple[int, bool]] = field(default_factory=list)  # (position in the log, merged?)


@dataclass
class _Session:
    actor: str
    task_id: str | None
    product: str | None
    start_ts: float
    seq: int
    builder: bool
    lessons: set[int | str] = field(default_factory=set)


@dataclass
class _Call:
    ts: float
    product: str | None
    spend_usd: float | None = None
    spend_usage: dict[str, Any] | None = None
    call_usd: float | None = None
    call_usage: dict[str, Any] | None = None
    simulated: bool = False  # the offline scripted model's: its dollars are not real, so not spend


class _Book:
    """Where each fact goes: its scope (product and factory) and its period (total, day, week)."""

    def __init__(self, since: float, until: float, tz: tzinfo | None):
        self.since, self.until, self.tz = since, until, tz
        self.accs: dict[tuple[str, str], _Acc] = defaultdict(_Acc)
        self.first_ts: dict[str, float] = {}
        self._days: dict[int, str] = {}
        self.tally: dict[tuple[str, str | None, str, int], float] = {}
        self.n_weeks = max(1, math.ceil((until - since) / WEEK - 1e-9))

    def inside(self, ts: float) -> bool:
        return self.since <= ts <= self.until

    def day_key(self, ts: float) -> str:
        # every time zone's offset is a whole number of quarter hours: one date per quarter hour, cached
        slot = int(ts // 900)
        key = self._days.get(slot)
        if key is None:
            key = self._days[slot] = "d:" + datetime.fromtimestamp(slot * 900, self.tz).date().isoformat()
        return key

    def week_index(self, ts: float) -> int:
        return self.n_weeks - 1 - min(int((self.until - ts) // WEEK), self.n_weeks - 1)

    def keys(self, ts: float) -> tuple[str, str, str] | None:
        if not self.since <= ts <= self.until:
            return None
        return "total", self.day_key(ts), f"w:{self.week_index(ts)}"

    def bump(self, product: str | None, ts: float, name: str, by: float = 1) -> None:
        """Count `by` of `name`: tallied per (product, day, week) here, spread over scopes and periods in `settle`."""
        if self.since <= ts <= self.until:
            key = (name, product, self.day_key(ts), self.week_index(ts))
            self.tally[key] = self.tally.get(key, 0) + by

    def settle(self) -> None:
        accs = self.accs
        for (name, product, day, week), by in self.tally.items():
            for s in (FACTORY, product) if product else (FACTORY,):
                for k in ("total", day, f"w:{week}"):
                    acc = accs[(s, k)]
                    setattr(acc, name, getattr(acc, name) + by)
        self.tally.clear()

    def push(self, product: str | None, ts: float, name: str, value: float) -> None:
        keys = self.keys(ts)
        if keys is None:
            return
        for s in (FACTORY, product) if product else (FACTORY,):
            for k in keys:
                getattr(self.accs[(s, k)], name).append(value)


def _is_human(actor: str) -> bool:
    return actor.startswith("human:") and len(actor) > len("human:")


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _fixes(data: dict[str, Any]) -> list[str]:
    f = data.get("fixes")
    if isinstance(f, str) and f:
        return [f]
    if isinstance(f, list):
        return [x for x in f if isinstance(x, str) and x]
    return []


def compute(events: Iterable[EventLike], *, since: float | None = None, until: float | None = None,
            tz: tzinfo | None = None, abandon_days: float = ABANDON_DAYS, min_merged: int = MIN_MERGED,
            min_periods: int = MIN_PERIODS, products: Iterable[str] = ()) -> Rate:
    """Fold `events` (in log order) into the rate over [since, until] (default: the first and last event).

    `products` are scopes to report even if they have no event in the window.
    """
    evs = list(events)
    ids = [e.id for e in evs]
    if any(i is not None for i in ids) and not all(
            a is not None and b is not None and a < b for a, b in zip(ids, ids[1:], strict=False)):  # from the log: in order
        evs.sort(key=lambda e: (e.id is None, e.id or 0))
    stamps = [e.ts for e in evs]
    until = until if until is not None else (max(stamps) if stamps else 0.0)
    since = since if since is not None else (min(stamps) if stamps else until)
    since = min(since, until)
    book = _Book(since, until, tz)
    fold = _Fold(book)
    for seq, e in enumerate(evs):
        if e.ts <= until:
            fold.read(seq, e)
    fold.count_tasks(abandon_days)
    fold.count_calls()
    fold.count_sessions()

    book.settle()
    names = sorted((set(book.first_ts) | {s for s, _ in book.accs}) - {FACTORY} | set(products))
    day_starts = _day_starts(book.since, book.until, book.tz)  # the same calendar for every scope
    empty = _Acc().values()
    scopes = {name: _scope(book, name, min_merged, min_periods, day_starts, empty) for name in [FACTORY, *names]}
    for name in fold.demo & set(scopes):
        scopes[name].demo = True
    trend_per = scopes[FACTORY].trend["merged"].per if scopes[FACTORY].trend else "week"
    return Rate(since=since, until=until, trend_per=trend_per, scopes=scopes)


_TOOL_CALL = Kind.AGENT_TOOL.value  # compared once per event: a plain str, no enum attribute lookup


class _Fold:
    """One pass over the log: what each kind of event counts (`_ON`), then the facts gathered per task, per model
    call and per agent session counted in the period they belong to (`count_*`)."""

    def __init__(self, book: _Book):
        self.book = book
        self.tasks: dict[str, _TaskFacts] = {}
        self.sessions: list[_Session] = []
        self.open_sessions: dict[str, _Session] = {}
        self.calls: dict[str, _Call] = {}
        self.waits: list[tuple[str | None, float, float]] = []  # (product, blocked at, minutes)
        self.demo: set[str] = set()  # products whose events say they are simulated demo history

    def task_of(self, e: EventLike) -> _TaskFacts | None:
        if not e.task_id:
            return None
        t = self.tasks.get(e.task_id)
        if t is None:
            t = self.tasks[e.task_id] = _TaskFacts(e.task_id, e.product)
        elif t.product is None and e.product:
            t.product = e.product
        return t

    def close_block(self, t: _TaskFacts, ts: float) -> None:
        if t.block_open is not None:
            self.waits.append((t.product, t.block_open, max(0.0, ts - t.block_open) / 60.0))
            t.block_open = None

    def open_session(self, actor: str, e: EventLike, product: str | None, seq: int, role: str | None) -> _Session:
        role = role or actor.split("-", 1)[0]
        s = _Session(actor, e.task_id, product, e.ts, seq, builder=role == "builder")
        self.sessions.append(s)
        self.open_sessions[actor] = s
        return s

    def read(self, seq: int, e: EventLike) -> None:
        """One event of the window's log, the `seq`th."""
        k, d = e.kind, e.data if isinstance(e.data, dict) else {}
        t = self.task_of(e)
        product = e.product or (t.product if t else None)
        book, ts = self.book, e.ts
        if book.since <= ts:  # a scope exists from its first event in the window (this runs for every event)
            first_ts = book.first_ts
            if ts < first_ts.get(FACTORY, math.inf):
                first_ts[FACTORY] = ts
            if product and ts < first_ts.get(product, math.inf):
                first_ts[product] = ts
        if k == _TOOL_CALL:  # the most frequent kind by far: counted, nothing else
            book.bump(product, ts, "tool_calls")
            return
        if t is not None and k in TASK_ACTIVITY:
            t.last_ts = max(t.last_ts, ts)
        merged_before = t is not None and t.merged_ts is not None
        on = _ON.get(k)
        if on is not None:
            on(self, _Seen(e, d, t, product, seq, merged_before))
        # the human's part: any human act counts; one on a blocked task ends its wait
        if _is_human(e.actor) and (k in HUMAN_KINDS or k.startswith("human.")):
            book.bump(product, ts, "interventions")
            if t is not None:
                if not merged_before:
                    t.humans += 1
                self.close_block(t, ts)
        elif t is not None and k in UNBLOCK_KINDS:
            self.close_block(t, ts)

    # --- one function per kind of event (`_ON`) ---

    def created(self, s: _Seen) -> None:
        t = s.task
        if t is None:
            return
        t.created_ts = s.event.ts if t.created_ts is None else t.created_ts
        if s.product and s.data.get("demo_history") is True:
            self.demo.add(s.product)
        for target in _fixes(s.data):
            fixed = self.tasks.get(target)
            if fixed is not None and fixed.merged_ts is not None and fixed.merged_ts <= s.event.ts:
                self.book.bump(fixed.product, s.event.ts, "defects_after")

    def started(self, s: _Seen) -> None:
        if s.task is not None:
            s.task.started = True

    def committed(self, s: _Seen) -> None:
        self.book.bump(s.product, s.event.ts, "commits")

    def sent_back(self, s: _Seen) -> None:
        """A send-back or a reviewer's change request: one more round, and not a first pass."""
        t = s.task
        if t is not None and not s.merged_before:
            t.returns += 1
            t.outcomes.append((s.seq, False))

    def defect_opened(self, s: _Seen) -> None:
        self.book.bump(s.product, s.event.ts, "defects_breaker")
        t = s.task
        if t is not None and not s.merged_before:
            t.defects += 1
            t.outcomes.append((s.seq, False))

    def reopened(self, s: _Seen) -> None:
        if s.merged_before and s.task is not None:
            self.book.bump(s.product, s.event.ts, "defects_after")

    def blocked(self, s: _Seen) -> None:
        t = s.task
        if t is None:
            return
        self.book.bump(s.product, s.event.ts, "blocked")
        if not s.merged_before:
            t.blocks += 1
            t.outcomes.append((s.seq, False))
        self.close_block(t, s.event.ts)
        t.block_open = s.event.ts

    def merged(self, s: _Seen) -> None:
        t = s.task
        if t is not None and not s.merged_before:
            t.merged_ts = s.event.ts
            t.outcomes.append((s.seq, True))

    def abandoned(self, s: _Seen) -> None:
        t = s.task
        if t is not None and t.abandoned_ts is None and not s.merged_before:
            t.abandoned_ts = s.event.ts

    def model_call(self, s: _Seen) -> None:
        e, d = s.event, s.data
        self.book.bump(s.product, e.ts, "model_calls")
        session = self.open_sessions.get(e.actor)
        if session is None or session.task_id != e.task_id:
            session = self.open_session(e.actor, e, s.product, s.seq, None)
        ids = d.get("lesson_ids")
        if isinstance(ids, list):
            session.lessons.update(i for i in ids if isinstance(i, (int, str)))
        c = self.calls.setdefault(str(d.get("call_id") or f"#{s.seq}"), _Call(e.ts, s.product))
        c.simulated = c.simulated or bool(d.get("simulated"))
        if isinstance(d.get("usd"), (int, float)):
            c.call_usd = float(d["usd"])
        if isinstance(d.get("usage"), dict):
            c.call_usage = d["usage"]

    def spend(self, s: _Seen) -> None:
        e, d = s.event, s.data
        c = self.calls.setdefault(str(d.get("call_id") or f"#{s.seq}"), _Call(e.ts, s.product))
        c.ts = min(c.ts, e.ts)
        c.product = c.product or s.product
        c.simulated = c.simulated or bool(d.get("simulated"))
        if isinstance(d.get("usd"), (int, float)):
            c.spend_usd = (c.spend_usd or 0.0) + float(d["usd"])
        if isinstance(d.get("usage"), dict):
            c.spend_usage = d["usage"]

    def agent_started(self, s: _Seen) -> None:
        e, d = s.event, s.data
        self.open_session(e.actor, e, s.product, s.seq, d.get("role") if isinstance(d.get("role"), str) else None)
        ids = d.get("lesson_ids")
        if isinstance(ids, list):
            self.open_sessions[e.actor].lessons.update(i for i in ids if isinstance(i, (int, str)))

    def agent_ended(self, s: _Seen) -> None:
        self.open_sessions.pop(s.event.actor, None)

    # --- what the pass gathered, counted in its period ---

    def count_tasks(self, abandon_days: float) -> None:
        """Cohorts (each merged task in the period it merged), blocked waits, and started tasks never merged."""
        book, until = self.book, self.book.until
        for t in self.tasks.values():
            if t.merged_ts is not None and book.inside(t.merged_ts):
                p, ts = t.product, t.merged_ts
                book.bump(p, ts, "merged")
                if t.created_ts is not None:
                    book.push(p, ts, "lead_h", (ts - t.created_ts) / 3600.0)
                book.bump(p, ts, "rounds", 1 + t.returns)
                if t.returns == 0 and t.humans == 0 and t.defects == 0 and t.blocks == 0:
                    book.bump(p, ts, "first_pass")
            if t.block_open is not None:
                self.close_block(t, until)
            if t.merged_ts is None and t.started:
                if t.abandoned_ts is not None:
                    book.bump(t.product, t.abandoned_ts, "abandoned")
                elif t.last_ts and t.last_ts <= until - abandon_days * DAY:
                    book.bump(t.product, t.last_ts, "abandoned")
        for product, at, minutes in self.waits:
            book.push(product, at, "waits_min", minutes)

    def count_calls(self) -> None:
        """Each model call's dollars (real only) and tokens, from its settlements or else its own record."""
        book = self.book
        for c in self.calls.values():
            usd = c.spend_usd if c.spend_usd is not None else (c.call_usd or 0.0)
            usage = c.spend_usage if c.spend_usage is not None else (c.call_usage or {})
            inp, out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
            cw, cr = _int(usage.get("cache_creation_input_tokens")), _int(usage.get("cache_read_input_tokens"))
            if not c.simulated:
                book.bump(c.product, c.ts, "usd", usd)
            book.bump(c.product, c.ts, "tokens", inp + out + cw + cr)
            book.bump(c.product, c.ts, "cache_read", cr)
            book.bump(c.product, c.ts, "input_all", inp + cw + cr)

    def count_sessions(self) -> None:
        """Sessions, the lessons they recalled, and whether a builder's session passed first time."""
        book = self.book
        for s in self.sessions:
            book.bump(s.product, s.start_ts, "sessions")
            book.bump(s.product, s.start_ts, "lessons", len(s.lessons))
            if not s.builder or s.task_id is None or s.task_id not in self.tasks:
                continue
            after = [ok for pos, ok in self.tasks[s.task_id].outcomes if pos > s.seq]
            if not after:
                continue  # still at work, or a lessons turn after the merge: no outcome to judge
            passed = int(after[0])
            if s.lessons:
                book.bump(s.product, s.start_ts, "with_pass", passed)
                book.bump(s.product, s.start_ts, "with_n")
            else:
                book.bump(s.product, s.start_ts, "without_pass", passed)
                book.bump(s.product, s.start_ts, "without_n")


@dataclass(slots=True)
class _Seen:
    """One event as a `_Fold` function reads it: its data, task facts, product, place in the log."""

    event: EventLike
    data: dict[str, Any]
    task: _TaskFacts | None
    product: str | None
    seq: int
    merged_before: bool  # its task had merged before this event


_ON: dict[str, Callable[[_Fold, _Seen], None]] = {
    Kind.TASK_CREATED: _Fold.created,
    Kind.TASK_STARTED: _Fold.started,
    Kind.COMMITTED: _Fold.committed,
    Kind.SENT_BACK: _Fold.sent_back,
    Kind.CHANGES_REQUESTED: _Fold.sent_back,
    Kind.DEFECT_OPENED: _Fold.defect_opened,
    Kind.TASK_REOPENED: _Fold.reopened,
    Kind.BLOCKED: _Fold.blocked,
    Kind.MERGED: _Fold.merged,
    **{k: _Fold.abandoned for k in ABANDON_KINDS},
    Kind.MODEL_CALL: _Fold.model_call,
    **{k: _Fold.spend for k in SPEND_KINDS},
    Kind.AGENT_STARTED: _Fold.agent_started,
    Kind.AGENT_FINISHED: _Fold.agent_ended,
    Kind.AGENT_STOPPED: _Fold.agent_ended,
}
"""What each kind of event counts; a kind not here counts only as a task's activity or a human's act."""


# --- periods, trends, verdicts ------------------------------------------------------------------


def _day_starts(since: float, until: float, tz: tzinfo | None) -> list[tuple[str, float, float]]:
    out = []
    d = datetime.fromtimestamp(since, tz).date()
    last = datetime.fromtimestamp(until, tz).date()
    while d <= last:
        start = datetime(d.year, d.month, d.day, tzinfo=tz)
        nxt = d + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
        out.append((d.isoformat(), start.timestamp(), end.timestamp()))
        d = nxt
    return out


def _coverage(start: float, end: float, alive_from: float, alive_to: float) -> float:
    span = end - start
    if span <= 0:
        return 0.0
    return max(0.0, min(end, alive_to) - max(start, alive_from)) / span


def _scope(book: _Book, name: str, min_merged: int, min_periods: int, day_starts: list[tuple[str, float, float]],
           empty: dict[str, float | None]) -> ScopeRate:
    """`empty`: the values of a period with nothing in it (most days of most products), copied, not recomputed."""
    accs = book.accs

    def values(key: str) -> dict[str, float | None]:
        acc = accs.get((name, key))
        return acc.values() if acc is not None else dict(empty)

    totals = values("total")
    alive_from = max(book.first_ts.get(name, book.until), book.since)
    days = [Period(key, start, end, values("d:" + key),  # the same key as _Book.day_key
                   _coverage(start, end, alive_from, book.until)) for key, start, end in day_starts]
    weeks = []
    for i in range(book.n_weeks):
        end = book.until - (book.n_weeks - 1 - i) * WEEK
        start = end - WEEK
        key = datetime.fromtimestamp(start, book.tz).date().isoformat()
        weeks.append(Period(key, start, end, values(f"w:{i}"), _coverage(start, end, alive_from, book.until)))
    per, periods = ("week", weeks) if len(weeks) >= 3 else ("day", days)
    trend = {m.name: _trend(m, periods, per) for m in METRICS}
    verdict = _verdict(totals, periods, per, trend, min_merged, min_periods)
    return ScopeRate(name=name, totals=totals, days=days, weeks=weeks, trend=trend, verdict=verdict)


def _trend(m: Metric, periods: list[Period], per: str) -> Trend:
    xs, ys, ws = [], [], []
    for i, p in enumerate(periods):
        v = p.values.get(m.name)
        if m.extensive:
            if p.coverage < 0.25:
                continue  # a sliver of a period before the product existed says nothing
            v = (v or 0) / p.coverage
        if v is None:
            continue
        xs.append(float(i))
        ys.append(float(v))
        ws.append(float(p.values.get("merged") or 0) if m.per_merged else 1.0)
    if len(xs) < 2 or sum(ws) <= 0 or len(set(xs)) < 2:
        return Trend(m.name, per, len(xs), None, None, None, None, "unknown")
    slope, icpt = weighted_slope(xs, ys, ws)
    start, end = icpt + slope * xs[0], icpt + slope * xs[-1]
    if m.name not in SIGNED:  # a straight line may cross zero; the metric cannot
        start, end = max(start, 0.0), max(end, 0.0)
    if m.unit == "share":
        change = end - start
        moved = abs(change) >= SHARE_THRESHOLD
    else:
        # relative to where it started, unless it started near zero (then to its mean): no +2000%
        mean = abs(sum(y * w for y, w in zip(ys, ws, strict=True)) / sum(ws))
        base = abs(start) if abs(start) >= 0.25 * mean else mean
        change = (end - start) / base if base > 1e-12 else 0.0
        moved = abs(change) >= REL_THRESHOLD
    if not moved:
        direction = "flat"
    elif m.better is None:
        direction = "rising" if change > 0 else "falling"
    else:
        direction = "improving" if (change > 0) == (m.better == "up") else "worse"
    return Trend(m.name, per, len(xs), slope, start, end, change, direction)


def describe_change(t: Trend) -> str:
    """`-42%` or `+30 pts`: how a metric moved over the window."""
    if t.change is None:
        return "?"
    pct = t.change * 100 if abs(t.change * 100) >= 0.5 else 0.0  # no "-0%"
    return f"{pct:+.0f} pts" if METRIC[t.metric].unit == "share" else f"{pct:+.0f}%"


def _verdict(totals: dict[str, float | None], periods: list[Period], per: str, trend: dict[str, Trend],
             min_merged: int, min_periods: int) -> Verdict:
    improving = [m for m in CORE if trend[m].direction == "improving"]
    worse = [m for m in CORE if trend[m].direction == "worse"]
    flat = [m for m in CORE if trend[m].direction == "flat"]
    score = len(improving) - len(worse)
    leaning = COMPOUNDING if score >= 2 else WORSE if score <= -2 else FLAT
    merged = int(totals.get("merged") or 0)
    with_merges = sum(1 for p in periods if p.values.get("merged"))
    caveat = None
    if merged < min_merged or with_merges < min_periods:
        caveat = (f"too few tasks to tell: {merged} merged (at least {min_merged} needed) in {with_merges} "
                  f"{per}{'s' if with_merges != 1 else ''} with merges (at least {min_periods} needed)")
    verdict = TOO_FEW if caveat else leaning

    def says(ms: list[str]) -> str:
        return ", ".join(f"{METRIC[m].label} {describe_change(trend[m])}" for m in ms)

    parts = [f"{len(improving)} of {len(CORE)} improving" + (f" ({says(improving)})" if improving else ""),
             f"{len(worse)} worse" + (f" ({says(worse)})" if worse else ""),
             f"{merged} merged over {len(periods)} {per}s"]
    head = verdict if not caveat else f"{TOO_FEW} (leaning {leaning})"
    return Verdict(verdict=verdict, leaning=leaning, caveat=caveat, improving=improving, worse=worse, flat=flat,
                   merged=merged, periods_with_merges=with_merges, line=f"{head}: " + "; ".join(parts))
