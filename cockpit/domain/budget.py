"""Budget arithmetic: which budgets a model call counts against, and whether the next one fits.

Pure (no I/O): the store feeds it the ledger rows and `budget.raised` events at
open, then calls it from inside its single writer for every reservation and
settlement, in the same batch step that writes the ledger row. That is what
makes reservations atomic: twenty agents reserving at once are checked one
after the other against running totals that include each other's holds
(invariant 4 of docs/architecture.md).

Amounts are kept as integer nano-dollars, so running totals never drift.

A ledger row counts against every budget it falls under (its task, its
product, the local day it was reserved on, the whole factory) as:
- reserved:  its whole reservation, held;
- settled:   what it cost;
- unsettled: what was received (settled) plus the rest of its reservation, held
             until reconciled (a call that died mid-stream, or was cut by a crash).

Simulated spend (calls answered by the offline scripted model) is kept apart: it counts against
the same budgets' limits but in a pool of its own (keys named `sim:...`), so a day of offline play
never eats the real day's budget, and real totals never include it.

Effective limit = configured + every raise a human recorded. A task's limit is
its own `budget_usd` (recorded at creation; a task-scope raise is a task event
the state machine folds into it), so the task gate and the ledger agree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .actors import Role, role_of
from .errors import Refused
from .format import money

NANO = 1_000_000_000


def nano(usd: float) -> int:
    return int(round(usd * NANO))


def usd_of(n: int) -> float:
    return n / NANO


class Scope(StrEnum):
    TASK = "task"
    PRODUCT = "product"
    DAY = "day"
    FACTORY = "factory"


ScopeKey = tuple[Scope, str]
FACTORY_KEY: ScopeKey = (Scope.FACTORY, "")
SIM = "sim:"  # the key prefix of the simulated pool
SIM_FACTORY_KEY: ScopeKey = (Scope.FACTORY, SIM)


def simulated_key(key: ScopeKey) -> ScopeKey:
    """The simulated pool's twin of a real budget key."""
    return key if is_simulated(key) else (key[0], SIM + key[1])


def is_simulated(key: ScopeKey) -> bool:
    return key[1].startswith(SIM)


def real_key(key: ScopeKey) -> ScopeKey:
    """The budget a (possibly simulated) key's limit and raises are those of."""
    return (key[0], key[1][len(SIM):]) if is_simulated(key) else key


def day_of(ts: float) -> str:
    """The local calendar day of a timestamp: the unit of the per-day budget."""
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def scopes_of(task_id: str | None, product: str | None, day: str, simulated: bool = False) -> tuple[ScopeKey, ...]:
    """Every budget a call with these attributes counts against, narrowest first (simulated: their sim pool)."""
    out: list[ScopeKey] = []
    if task_id:
        out.append((Scope.TASK, task_id))
    if product:
        out.append((Scope.PRODUCT, product))
    out.append((Scope.DAY, day))
    out.append(FACTORY_KEY)
    return tuple(simulated_key(k) for k in out) if simulated else tuple(out)


NOTICE_THRESHOLDS = (80, 100)
"""Percentages of a budget whose crossing calls the human (cockpit.domain.notices), once each per budget."""


def thresholds_crossed(before: int, after: int, limit: int) -> list[int]:
    """The NOTICE_THRESHOLDS that settled spend passes going from `before` to `after` (nano-dollars)."""
    if limit <= 0 or after <= before:
        return []
    return [p for p in NOTICE_THRESHOLDS if before * 100 < p * limit <= after * 100]


class BudgetLimits(BaseModel):
    """Configured limits in USD (None: unlimited), as factory.toml says them."""

    model_config = ConfigDict(frozen=True)
    factory_usd: float | None = Field(None, ge=0)
    day_usd: float | None = Field(None, ge=0)
    product_usd: dict[str, float | None] = Field(default_factory=dict)


def row_counts(state: str, reserved: int, settled: int) -> tuple[int, int]:
    """(settled, held) nano-dollars one ledger row counts against its budgets."""
    if state == "reserved":
        return settled, reserved
    if state == "unsettled":
        return settled, max(reserved - settled, 0)
    return settled, 0


@dataclass
class Totals:
    settled: int = 0
    held: int = 0

    @property
    def used(self) -> int:
        return self.settled + self.held


@dataclass(frozen=True)
class Hold:
    """A ledger row not yet settled for good: what it holds and where."""

    scopes: tuple[ScopeKey, ...]
    state: str
    reserved: int
    settled: int = 0
    live: bool = True  # reserved by this process (a session will settle it) vs loaded at open


@dataclass(frozen=True)
class Reservation:
    call_id: str
    task_id: str | None
    product: str | None
    actor: str
    model: str
    usd: float
    ts: float = field(default_factory=time.time)
    simulated: bool = False

    @property
    def scopes(self) -> tuple[ScopeKey, ...]:
        return scopes_of(self.task_id, self.product, day_of(self.ts), self.simulated)


@dataclass(frozen=True)
class Settlement:
    """The real cost of a reserved call; complete=False keeps the rest held ('unsettled')."""

    call_id: str
    usd: float
    complete: bool = True
    reconcile: bool = False  # a human or a sweep closing an unsettled row, not the session that made it


class BudgetExceeded(Refused):
    """The next call would take a budget past its limit: the call is not made."""

    def __init__(self, *, scope: Scope, key: str, spent: float, reserved: float, limit: float, estimate: float):
        self.simulated = key.startswith(SIM)
        key = key[len(SIM):] if self.simulated else key
        self.scope, self.key = scope, key
        self.spent, self.reserved, self.limit, self.estimate = spent, reserved, limit, estimate
        super().__init__(
            f"{scope_label(scope, key)} budget{' (simulated spend, offline)' if self.simulated else ''}: "
            f"spent ${spent:.4f} + reserved ${reserved:.4f} + next call estimate ${estimate:.4f} > limit ${limit:.4f}"
        )

    def figures(self) -> dict[str, Any]:
        return {"scope": self.scope.value, "key": self.key, **({"simulated": True} if self.simulated else {}),
                "spent_usd": round(self.spent, 6), "reserved_usd": round(self.reserved, 6), "limit_usd": round(self.limit, 6),
                "estimate_usd": round(self.estimate, 6)}

    def detail(self) -> str:
        """What the human reads on the blocked task, and what to do about it."""
        flag = {Scope.TASK: f"--task {self.key}", Scope.PRODUCT: f"--product {self.key}",
                Scope.DAY: "--day", Scope.FACTORY: "--factory"}[self.scope]
        return (f"{self.reason}\nThe call was not made. Raise the budget (cockpit budget raise {flag} --usd AMOUNT, "
                "or the raise-budget key) and retry the task.")


def scope_label(scope: Scope, key: str) -> str:
    if scope == Scope.FACTORY:
        return "factory"
    if scope == Scope.DAY:
        return f"day {key}"
    return f"{scope.value} {key}"


def parse_raise(actor: str, task_id: str | None, data: dict[str, Any]) -> tuple[ScopeKey, int]:
    """Validate a `budget.raised` event: only a human raises a budget, by a positive amount."""
    if role_of(actor) != Role.HUMAN:
        raise Refused(f"{actor} may not raise a budget: only a human does")
    try:
        scope = Scope(data.get("scope"))
    except ValueError:
        raise Refused(f"budget.raised: scope must be one of {', '.join(s.value for s in Scope)}") from None
    usd = data.get("usd")
    if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd <= 0:
        raise Refused("budget.raised: 'usd' must be a positive amount")
    key = str(data.get("key") or "")
    if scope == Scope.TASK:
        key = task_id or key
    if scope != Scope.FACTORY and not key:
        raise Refused(f"budget.raised: a {scope.value} raise names its {scope.value}")
    return (scope, "" if scope == Scope.FACTORY else key), nano(float(usd))


class BudgetBook:
    """Running totals per budget, open holds and raises; the store's writer is its only writer."""

    def __init__(self, limits: BudgetLimits | None = None):
        self.limits = limits or BudgetLimits()
        self.totals: dict[ScopeKey, Totals] = {}
        self.open: dict[str, Hold] = {}
        self.raises: dict[ScopeKey, int] = {}

    # --- loading (at store open) ---------------------------------------------------

    def load_row(self, *, call_id: str, ts: float, task_id: str | None, product: str | None, state: str,
                 reserved_usd: float, settled_usd: float, simulated: bool = False) -> None:
        scopes = scopes_of(task_id, product, day_of(ts), simulated)
        reserved, settled = nano(reserved_usd), nano(settled_usd)
        s, h = row_counts(state, reserved, settled)
        for k in scopes:
            t = self.totals.setdefault(k, Totals())
            t.settled += s
            t.held += h
        if state != "settled":
            self.open[call_id] = Hold(scopes, state, reserved, settled, live=False)

    def reload_row(self, *, call_id: str, ts: float, task_id: str | None, product: str | None, state: str,
                   reserved_usd: float, settled_usd: float, simulated: bool = False) -> None:
        """A row another process wrote (or changed): what this book held for it is replaced by the row."""
        old = self.open.pop(call_id, None)
        if old is not None:
            s, h = row_counts(old.state, old.reserved, old.settled)
            for k in old.scopes:
                t = self.totals.setdefault(k, Totals())
                t.settled -= s
                t.held -= h
        self.load_row(call_id=call_id, ts=ts, task_id=task_id, product=product, state=state,
                      reserved_usd=reserved_usd, settled_usd=settled_usd, simulated=simulated)

    def load_raise(self, actor: str, task_id: str | None, data: dict[str, Any]) -> None:
        try:
            key, amount = parse_raise(actor, task_id, data)
        except Refused:
            return  # the writer never commits one; ignore hand-made rows rather than refuse to open
        if key[0] != Scope.TASK:
            self.raises[key] = self.raises.get(key, 0) + amount

    # --- reading -------------------------------------------------------------------

    def limit(self, key: ScopeKey, task_budget_usd: float | None = None,
              limits: BudgetLimits | None = None, extra_raise: int = 0) -> float | None:
        """Effective limit in USD (configured + raises); None: unlimited. A simulated pool has its budget's limit."""
        lim = limits or self.limits
        key = real_key(key)  # a raise is recorded against the real key: it lifts both pools
        scope, name = key
        if scope == Scope.TASK:
            return task_budget_usd  # raises are folded into the task's budget by the state machine
        configured = {Scope.PRODUCT: lim.product_usd.get(name), Scope.DAY: lim.day_usd,
                      Scope.FACTORY: lim.factory_usd}[scope]
        if configured is None:
            return None
        return usd_of(nano(configured) + self.raises.get(key, 0) + extra_raise)

    def total(self, key: ScopeKey) -> Totals:
        return self.totals.get(key, Totals())

    def begin(self) -> "BudgetTxn":
        return BudgetTxn(self)


@dataclass
class Step:
    """One prepared change, applied only once its event was accepted."""

    deltas: list[tuple[ScopeKey, int, int]] = field(default_factory=list)  # (key, d_settled, d_held)
    call_id: str | None = None
    hold: Hold | None = None  # the call's hold afterwards (None: closed)
    raise_key: ScopeKey | None = None
    raise_amount: int = 0
    spend_delta_usd: float = 0.0  # what the task's spend grows by


class BudgetTxn:
    """The changes of one writer batch on top of the book: committed with the batch or dropped with it."""

    def __init__(self, book: BudgetBook):
        self.book = book
        self.totals: dict[ScopeKey, Totals] = {}
        self.open: dict[str, Hold | None] = {}
        self.raises: dict[ScopeKey, int] = {}

    def _total(self, key: ScopeKey) -> Totals:
        t = self.totals.get(key)
        if t is None:
            base = self.book.totals.get(key, Totals())
            t = self.totals[key] = Totals(base.settled, base.held)
        return t

    def _hold(self, call_id: str) -> Hold | None:
        if call_id in self.open:
            return self.open[call_id]
        return self.book.open.get(call_id)

    def limit(self, key: ScopeKey, task_budget_usd: float | None) -> float | None:
        return self.book.limit(key, task_budget_usd, extra_raise=self.raises.get(real_key(key), 0))

    def prepare_reserve(self, res: Reservation, task_budget_usd: float | None) -> Step:
        """Refuse (BudgetExceeded) if any budget would pass its limit with this reservation held."""
        if self._hold(res.call_id) is not None:
            raise Refused(f"reservation {res.call_id} exists already")
        amount = nano(res.usd)
        if amount < 0:
            raise Refused("a reservation cannot be negative")
        scopes = res.scopes
        for key in scopes:
            limit = self.limit(key, task_budget_usd)
            if limit is None:
                continue
            t = self.totals.get(key) or self.book.totals.get(key, Totals())
            if t.settled + t.held + amount > nano(limit):
                raise BudgetExceeded(scope=key[0], key=key[1], spent=usd_of(t.settled), reserved=usd_of(t.held),
                                     limit=limit, estimate=res.usd)
        return Step(deltas=[(k, 0, amount) for k in scopes], call_id=res.call_id,
                    hold=Hold(scopes, "reserved", amount))

    def prepare_settle(self, st: Settlement) -> Step:
        hold = self._hold(st.call_id)
        if hold is None:
            raise Refused(f"no open reservation {st.call_id} to settle")
        if hold.state == "reserved" and hold.live and st.reconcile:
            raise Refused(f"call {st.call_id} is in flight: its session settles it")
        amount = nano(st.usd)
        if amount < hold.settled:
            raise Refused(f"call {st.call_id}: settled ${usd_of(hold.settled):.6f} already; cannot settle lower")
        old_s, old_h = row_counts(hold.state, hold.reserved, hold.settled)
        state = "settled" if st.complete else "unsettled"
        new_s, new_h = row_counts(state, hold.reserved, amount)
        after = None if st.complete else Hold(hold.scopes, state, hold.reserved, amount, hold.live)
        return Step(deltas=[(k, new_s - old_s, new_h - old_h) for k in hold.scopes], call_id=st.call_id,
                    hold=after, spend_delta_usd=usd_of(amount - hold.settled))

    def prepare_raise(self, actor: str, task_id: str | None, data: dict[str, Any]) -> Step:
        key, amount = parse_raise(actor, task_id, data)
        if key[0] == Scope.TASK:
            return Step()  # the task's own budget_usd carries it (validated by the state machine)
        return Step(raise_key=key, raise_amount=amount)

    def apply(self, step: Step) -> None:
        for key, ds, dh in step.deltas:
            t = self._total(key)
            t.settled += ds
            t.held += dh
        if step.call_id is not None:
            self.open[step.call_id] = step.hold
        if step.raise_key is not None:
            self.raises[step.raise_key] = self.raises.get(step.raise_key, 0) + step.raise_amount

    def commit(self) -> None:
        self.book.totals.update(self.totals)
        for call_id, hold in self.open.items():
            if hold is None:
                self.book.open.pop(call_id, None)
            else:
                self.book.open[call_id] = hold
        for key, amount in self.raises.items():
            self.book.raises[key] = self.book.raises.get(key, 0) + amount


@dataclass(frozen=True, slots=True)
class RaiseChoice:
    """Which budget a human's one-key raise on a task lifts. `scope` None: the one that blocked it (its block
    event names it)."""

    scope: Scope | None
    key: str
    label: str


def budget_to_raise(*, task_id: str, product: str, blocked_by_budget: bool, task_budget_usd: float | None,
                    limits: BudgetLimits) -> RaiseChoice:
    """The budget that blocked the task, else the task's own, else its product's; a product without a budget is
    unlimited, so there is nothing to raise (refused, with what to do). The TUI's key and `cockpit budget raise
    --for T` share this rule."""
    if blocked_by_budget:
        return RaiseChoice(None, "", "the budget that blocked it")
    if task_budget_usd is not None:
        return RaiseChoice(Scope.TASK, task_id, f"its own budget ({money(task_budget_usd)})")
    if limits.product_usd.get(product) is not None:
        return RaiseChoice(Scope.PRODUCT, product, f"the budget of {product}")
    raise Refused(f"{task_id} has no budget of its own and {product} has no budget (unlimited): nothing to raise; "
                  f"give the task a budget, or set budget_usd for {product} in factory.toml")


def unlimited_refusal(scope: Scope, key: str, limits: BudgetLimits) -> str | None:
    """Why raising this budget means nothing (it is unlimited in factory.toml), or None when it has a limit."""
    if scope == Scope.PRODUCT:
        if key not in limits.product_usd:
            return f"no product {key!r} in factory.toml"
        if limits.product_usd[key] is None:
            return f"product {key!r} has no budget (unlimited): set budget_usd for it in factory.toml"
    if scope == Scope.DAY and limits.day_usd is None:
        return "there is no day budget (unlimited): set [budgets] day_usd in factory.toml"
    if scope == Scope.FACTORY and limits.factory_usd is None:
        return "there is no factory budget (unlimited): set [budgets] factory_usd in factory.toml"
    return None
