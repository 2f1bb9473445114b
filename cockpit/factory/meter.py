"""The meter: what the agents spend, read from the ledger, before the bill says it.

Query functions only (the store's ledger and its budget book are the truth);
the CLI (`cockpit spend`, `cockpit status --json`) and the cockpit's panes call
them. Every amount is USD. "Reserved" is what calls in flight hold, plus the
rest of unsettled calls' reservations (they count against budgets until
reconciled).

Simulated spend (the offline scripted model's calls) is never added to real spend: its rows are
their own (" (simulated)" after the key), totals and burn are real, and the simulated pool of each
budget shows as its own line once something was spent in it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..config import FactoryConfig
from ..domain.actors import role_of
from ..domain.budget import (FACTORY_KEY, Scope, ScopeKey, day_of, is_simulated, real_key,
                             scope_label, simulated_key, usd_of)
from ..domain.errors import Refused
from ..domain.tasks import OPEN_STATES
from ..store import reads
from ..store import Store

By = Literal["product", "task", "agent", "role", "model", "day"]
BY_CHOICES: tuple[str, ...] = ("product", "task", "agent", "role", "model", "day")
BURN_WINDOW_S = 15 * 60



@dataclass
class SpendRow:
    key: str
    settled_usd: float = 0.0
    reserved_usd: float = 0.0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    simulated: bool = False

    @property
    def cache_read_ratio(self) -> float:
        total = self.input_tokens + self.cache_creation_tokens + self.cache_read_tokens
        return self.cache_read_tokens / total if total else 0.0

    def add(self, other: "SpendRow") -> None:
        for f in ("settled_usd", "reserved_usd", "calls", "input_tokens", "output_tokens", "cache_creation_tokens",
                  "cache_read_tokens"):
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["settled_usd"] = round(self.settled_usd, 6)
        d["reserved_usd"] = round(self.reserved_usd, 6)
        d["cache_read_ratio"] = round(self.cache_read_ratio, 4)
        if not self.simulated:
            del d["simulated"]
        return d


def _role(actor: str) -> str:
    try:
        return role_of(actor).value
    except Refused:
        return actor


async def spend_by(store: Store, by: str = "product") -> list[SpendRow]:
    """Spend grouped by product, task, agent, role, model or day (the local day the call was reserved)."""
    if by not in BY_CHOICES:
        raise Refused(f"spend by {by!r}: choose one of {', '.join(BY_CHOICES)}")
    rows = await reads.ledger_grouped(store, by)
    out: dict[str, SpendRow] = {}
    for key, *vals, simulated in rows:
        if by == "role":
            key = _role(key)
        elif by == "day":
            key = day_of(key)
        name = ("(none)" if key is None else str(key)) + (" (simulated)" if simulated else "")
        row = SpendRow(name, float(vals[0] or 0), float(vals[1] or 0), *(int(v or 0) for v in vals[2:]),
                       simulated=bool(simulated))
        if name in out:
            out[name].add(row)
        else:
            out[name] = row
    return sorted(out.values(), key=lambda r: (-r.settled_usd, r.key))


async def totals(store: Store, *, simulated: bool = False) -> SpendRow:
    """Real spend (or, `simulated`, the scripted model's), summed over every call."""
    rows = await spend_by(store, "model")
    total = SpendRow("simulated" if simulated else "total", simulated=simulated)
    for r in rows:
        if r.simulated == simulated:
            total.add(r)
    return total


async def burn_rate(store: Store, *, now: float | None = None, window_s: float = BURN_WINDOW_S,
                    scope: ScopeKey = FACTORY_KEY) -> float:
    """USD per hour settled over the last `window_s` seconds (15 minutes), in one budget's scope (a `sim:` key: its
    simulated pool)."""
    now = time.time() if now is None else now
    simulated, (kind, name) = is_simulated(scope), real_key(scope)
    usd = await reads.settled_in_window(store, now - window_s, now, simulated=simulated,
                                        task_id=name if kind == Scope.TASK else None,
                                        product=name if kind == Scope.PRODUCT else None)
    return usd * 3600.0 / window_s


def _seconds_to_midnight(now: float) -> float:
    lt = time.localtime(now)
    midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    return max(midnight - now, 0.0)


async def projection_end_of_day(store: Store, *, now: float | None = None) -> float:
    """What today will have cost by midnight at the current burn rate: today's spend + burn x hours left."""
    now = time.time() if now is None else now
    spent = usd_of(store.budget.total((Scope.DAY, day_of(now))).settled)
    return spent + await burn_rate(store, now=now) * _seconds_to_midnight(now) / 3600.0


@dataclass
class BudgetLine:
    scope: str
    key: str
    label: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    left_usd: float
    burn_usd_per_hour: float
    hours_left: float | None  # None: nothing is burning it

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("limit_usd", "spent_usd", "reserved_usd", "left_usd", "burn_usd_per_hour"):
            d[k] = round(d[k], 6)
        d["hours_left"] = None if self.hours_left is None else round(self.hours_left, 3)
        return d


async def budget_lines(config: FactoryConfig, store: Store, *, now: float | None = None) -> list[BudgetLine]:
    """Every budget with a limit (factory, today, each product, each open task) and the time left before it runs out."""
    now = time.time() if now is None else now
    limits = config.budget_limits()
    keys: list[tuple[ScopeKey, float | None]] = [(FACTORY_KEY, None), ((Scope.DAY, day_of(now)), None)]
    keys += [((Scope.PRODUCT, p.name), None) for p in config.products]
    keys += [((Scope.TASK, t.id), t.budget_usd) for t in store.tasks() if t.state in OPEN_STATES]
    # a budget's simulated pool, once the scripted model spent in it
    keys += [(simulated_key(k), b) for k, b in list(keys) if store.budget.total(simulated_key(k)).used]
    out = []
    for key, task_budget in keys:
        limit = store.budget.limit(key, task_budget, limits=limits)
        if limit is None:
            continue
        tot = store.budget.total(key)
        spent, held = usd_of(tot.settled), usd_of(tot.held)
        left = max(limit - spent - held, 0.0)
        burn = await burn_rate(store, now=now, scope=key)
        label = scope_label(*real_key(key)) + (" (simulated)" if is_simulated(key) else "")
        out.append(BudgetLine(key[0].value, key[1], label, limit, spent, held, left, burn,
                              left / burn if burn > 0 else None))
    return out


async def cache_read_ratio(store: Store) -> float:
    """Share of all input tokens read from the prompt cache."""
    return (await totals(store)).cache_read_ratio


async def spend_report(config: FactoryConfig, store: Store, by: str = "product", *, now: float | None = None) -> dict:
    """Everything `cockpit spend --json` prints."""
    now = time.time() if now is None else now
    rows = await spend_by(store, by)
    total = await totals(store)
    sim = await totals(store, simulated=True)
    return {
        "by": by,
        "rows": [r.as_dict() for r in rows],
        "total_usd": round(total.settled_usd, 6),
        "reserved_usd": round(total.reserved_usd, 6),
        "calls": total.calls,
        "simulated_usd": round(sim.settled_usd, 6),
        "simulated_calls": sim.calls,
        "burn_usd_per_hour": round(await burn_rate(store, now=now), 6),
        "projection_end_of_day_usd": round(await projection_end_of_day(store, now=now), 6),
        "cache_read_ratio": round(total.cache_read_ratio, 4),
        "budgets": [b.as_dict() for b in await budget_lines(config, store, now=now)],
    }


def _usd(x: float) -> str:
    return f"${x:.4f}"


def report_lines(report: dict) -> list[str]:
    """The human-readable `cockpit spend`."""
    by = report["by"]
    width = max([len(by), len("total")] + [len(r["key"]) for r in report["rows"]])
    lines = [f"{by:<{width}}  {'spent':>10}  {'reserved':>10}  {'calls':>5}  {'cache read':>10}"]
    for r in [*report["rows"], {"key": "total", "settled_usd": report["total_usd"], "reserved_usd": report["reserved_usd"],
                                "calls": report["calls"], "cache_read_ratio": report["cache_read_ratio"]}]:
        lines.append(f"{r['key']:<{width}}  {_usd(r['settled_usd']):>10}  {_usd(r['reserved_usd']):>10}  "
                     f"{r['calls']:>5}  {r['cache_read_ratio']:>10.0%}")
    if report.get("simulated_calls"):
        lines.append(f"the total is real spend; {report['simulated_calls']} simulated calls (the offline scripted "
                     f"model's, not real money) came to {_usd(report['simulated_usd'])}")
    lines.append(f"burn {_usd(report['burn_usd_per_hour'])}/h over the last 15 min; "
                 f"projected today {_usd(report['projection_end_of_day_usd'])}")
    for b in report["budgets"]:
        left = "not burning" if b["hours_left"] is None else f"{b['hours_left']:.1f} h left at this rate"
        lines.append(f"budget {b['label']}: {_usd(b['spent_usd'])} spent + {_usd(b['reserved_usd'])} reserved "
                     f"of {_usd(b['limit_usd'])}, {_usd(b['left_usd'])} left, {left}")
    return lines


def product_budget(config: FactoryConfig, store: Store, product: str) -> dict[str, float | None]:
    """A product's effective budget (configured + raises; None: unlimited) and what its calls hold now."""
    key = (Scope.PRODUCT, product)
    limit = store.budget.limit(key, limits=config.budget_limits())
    return {"budget_usd": None if limit is None else round(limit, 6),
            "reserved_usd": round(usd_of(store.budget.total(key).held), 6)}
