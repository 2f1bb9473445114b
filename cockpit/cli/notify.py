"""`cockpit notify list|retry|test`: the outbox on the command line (sent, pending, failed; retry; a test notice)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable

from ..config import load_factory
from ..domain.visible import visible_line
from .store_access import with_store
from ..factory.notify_sender import outbox_rows, retry_failed, send_test


def cmd_list(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    rows = with_store(config, outbox_rows)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no notices yet")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        err = f"  ({visible_line(r['error'])})" if r["error"] else ""
        print(f"{r['state']:<8} {when}  {r['key']}  tries {r['attempts']}{err}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    n = with_store(config, retry_failed)
    print(f"{n} failed notice(s) queued again" if n else "no failed notices")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Send one test notice on every configured channel (or --channel NAME) now; exit 1 if one refused it."""
    config = load_factory(args.factory)
    results = asyncio.run(send_test(config, args.channel))
    for name, err in results:
        print(f"{name}: {err}" if err else f"{name}: accepted")
    return 1 if any(err for _, err in results) else 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    n = sub.add_parser("notify", help="notices for the human: list them, retry the failed, send a test")
    nsub = n.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    ls = nsub.add_parser("list", help="every notice: sent, pending or failed, with its last error")
    factory_arg(ls)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)
    rt = nsub.add_parser("retry", help="queue every failed notice again")
    factory_arg(rt)
    rt.set_defaults(func=cmd_retry)
    te = nsub.add_parser("test", help="send a test notice on every configured channel now")
    factory_arg(te)
    te.add_argument("--channel", metavar="NAME", help="only this channel: webhook, terminal or apprise")
    te.set_defaults(func=cmd_test)
