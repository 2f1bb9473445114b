"""`cockpit rate [--product P] [--since DATE] [--json]`: the factory's rate, folded from its store."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from ..config import FactoryConfig, load_factory
from ..domain.errors import Refused
from ..domain.metrics import Rate
from ..factory.rate import compute_rate, parse_since, text_report
from .store_access import with_store


def rate_of(config: FactoryConfig, *, since: str | None = None) -> Rate:
    """The rate of a factory from its store, every configured product included."""
    start = parse_since(since) if since else None
    names = [p.name for p in config.products]
    return with_store(config, lambda s: compute_rate(s, since=start, products=names))


def cmd_rate(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    rate = rate_of(config, since=args.since)
    if args.product is not None and args.product not in rate.scopes:
        known = ", ".join(rate.products) or "none"
        raise Refused(f"no product {args.product!r} in the factory or its history (products: {known})")
    if args.json:
        data = rate.to_dict()
        if args.product is not None:
            data["products"] = {args.product: data["products"][args.product]}
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(text_report(rate, product=args.product)))
    return 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    r = sub.add_parser("rate", help="does the factory compound? throughput, yield, rework, human load, cost, memory, "
                                    "motion: per product, with the trend and a verdict")
    factory_arg(r)
    r.add_argument("--product", "-p", help="one product (default: the factory and every product)")
    r.add_argument("--since", help="start of the window: 2025-03-01, a date-time, or 30d / 6w back (default: all)")
    r.add_argument("--json", action="store_true", help="every metric, per day and per week, the trends and verdicts")
    r.set_defaults(func=cmd_rate)


