"""`cockpit tail AGENT [--follow]`: print an agent's log, like tail -f, from any process."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..config import load_factory
from ..domain.errors import Refused
from ..factory.agent_log import known_agents, log_path, logs_dir, tail


def cmd_tail(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    directory = logs_dir(config)
    path = log_path(directory, args.agent)
    if not path.exists() and not args.follow:
        agents = known_agents(directory)
        listing = ", ".join(sorted(agents)[:20]) if agents else "none yet: logs are written while the factory runs"
        raise Refused(f"no log for {args.agent} in {directory} (agents with a log: {listing})")
    try:
        return tail(path, lines=args.lines, follow=args.follow)
    except BrokenPipeError:  # `cockpit tail builder-1 | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("tail", help="print an agent's log (memory/logs/AGENT.log); --follow keeps printing")
    factory_arg(p)
    p.add_argument("agent", help="the agent, e.g. builder-3")
    p.add_argument("--follow", "-F", action="store_true", help="keep printing what the agent does, like tail -f")
    p.add_argument("--lines", "-n", type=int, default=20, help="how many lines to print first (default 20)")
    p.set_defaults(func=cmd_tail)
