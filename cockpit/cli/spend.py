"""`cockpit spend` and `cockpit budget raise|reconcile`: the meter and the budgets on the command line."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable

from ..config import load_factory
from ..domain.errors import Refused
from .store_access import with_store
from ..store import StoreError
from ..factory import commands
from ..factory.meter import BY_CHOICES, report_lines, spend_report


def cmd_spend(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    report = with_store(config, lambda s: spend_report(config, s, args.by))
    print(json.dumps(report, indent=2) if args.json else "\n".join(report_lines(report)))
    return 0


def _amount(text: str) -> float:
    try:
        usd = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD") from None
    if not math.isfinite(usd) or usd <= 0:
        raise argparse.ArgumentTypeError("the amount must be a positive number of USD")
    return usd


def cmd_budget_raise(args: argparse.Namespace) -> int:
    # `--factory` alone names the factory-wide budget; `--factory F` (or -f F) names the factory.toml
    whole_factory = args.factory_opt is True
    path = args.factory_path or (args.factory_opt if isinstance(args.factory_opt, str) else None)
    chosen = [bool(args.task), bool(args.product), args.day, whole_factory]
    if sum(chosen) != 1:
        raise Refused("say which budget: exactly one of --task T, --product P, --day, --factory")
    config = load_factory(path or os.environ.get("COCKPIT_FACTORY", "factory.toml"))
    if args.task:
        scope, key = "task", args.task
    elif args.product:
        scope, key = "product", args.product
    elif args.day:
        scope, key = "day", None
    else:
        scope, key = "factory", None
    ev = with_store(config, lambda s: commands.raise_budget(
        s, scope=scope, key=key, usd=args.usd, actor=config.factory.human))
    where = f" {ev.data['key']}" if ev.data.get("key") else ""
    print(f"budget.raised {scope}{where} +${args.usd:.4f} (event {ev.id}); blocked tasks resume with `cockpit retry`")
    return 0


def cmd_budget_reconcile(args: argparse.Namespace) -> int:
    from ..factory.recovery import acquire_run_lock

    config = load_factory(args.factory)
    try:
        # a running cockpit may still settle the very reservation being closed here
        acquire_run_lock(config.store_path)
    except StoreError as e:
        raise StoreError(f"{e} `budget reconcile` closes reservations a running cockpit may still settle: "
                         "run it with the cockpit stopped.") from None
    done = with_store(config, lambda s: commands.reconcile(
        s, actor=config.factory.human, call_id=args.call, usd=args.usd))
    print(f"reconciled {len(done)} call(s)" + "".join(f"\n  {c}" for c in done))
    return 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    s = sub.add_parser("spend", help="what the agents spent: by product, task, agent, role, model or day")
    factory_arg(s)
    s.add_argument("--by", choices=BY_CHOICES, default="product")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_spend)

    b = sub.add_parser("budget", help="raise a budget, or reconcile unsettled model calls")
    bsub = b.add_subparsers(dest="budget_command", metavar="ACTION", required=True)
    r = bsub.add_parser("raise", help="raise a budget by an amount (recorded as yours); then retry the task",
                        usage="cockpit budget raise (--task T | --product P | --day | --factory) --usd AMOUNT [-f F]")
    r.add_argument("--task", metavar="T", help="the task's own budget")
    r.add_argument("--product", metavar="P", help="the product's budget")
    r.add_argument("--day", action="store_true", help="today's budget")
    r.add_argument("--factory", dest="factory_opt", nargs="?", const=True, default=None, metavar="F",
                   help="alone: the whole factory's budget; with a path: the factory.toml to use")
    r.add_argument("-f", dest="factory_path", metavar="F",
                   help="path to factory.toml (default: ./factory.toml or $COCKPIT_FACTORY)")
    r.add_argument("--usd", type=_amount, required=True, help="how much to add, in USD")
    r.set_defaults(func=cmd_budget_raise)
    c = bsub.add_parser("reconcile", help="close unsettled calls (broken streams, crashes): frees what they hold")
    factory_arg(c)
    c.add_argument("--call", help="one call id (default: every unsettled call)")
    c.add_argument("--usd", type=float, help="with --call: its real cost, from the bill")
    c.set_defaults(func=cmd_budget_reconcile)
