"""The command line: `cockpit ...` and `python -m cockpit ...`.

Every command that changes a task goes through cockpit.factory.commands, the
same functions the TUI keys call, so the domain validates it either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from .. import __version__
from ..config import ConfigError, FactoryConfig, load_factory
from ..domain.errors import Refused
from ..domain.tasks import IN_FLIGHT_STATES, TaskState
from ..store import Store, StoreError
from .store_access import with_store
from .terminal_guard import visible_output

DEFAULT_FACTORY = "factory.toml"


def _factory_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--factory", "-f", default=os.environ.get("COCKPIT_FACTORY", DEFAULT_FACTORY),
                   help="path to factory.toml (default: ./factory.toml or $COCKPIT_FACTORY)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cockpit", description="Run a software factory of AI agents from one screen.")
    p.add_argument("--version", action="version", version=f"cockpit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="write the bundled demo factory and run it (no API key needed)")
    d.add_argument("--dir", type=Path, help="where to write it (default: a new temp dir)")
    d.add_argument("--headless", action="store_true", help="no screen: run until idle, print a summary")
    d.add_argument("--timeout", type=float, default=None, help="headless: stop after this many seconds")
    d.add_argument("--pace", type=float, default=None, metavar="S",
                   help="seconds between the scripted model's streamed events (default: 0.03 on screen, to watch "
                        "the agents type; 0 headless)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="open the cockpit on a factory")
    _factory_arg(r)
    r.add_argument("--headless", action="store_true", help="no screen: run until idle, print a summary")
    r.add_argument("--timeout", type=float, default=None, help="headless: stop after this many seconds")
    r.add_argument("--task", metavar="T", help="open this task's screen at start (a notice's link does)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="every product and task, from the store")
    _factory_arg(s)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_status)

    t = sub.add_parser("task", help="add work")
    tsub = t.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    ta = tsub.add_parser("add", help="queue a task on a product")
    _factory_arg(ta)
    ta.add_argument("product")
    ta.add_argument("title")
    ta.add_argument("--body", default="")
    ta.add_argument("--priority", type=int, default=0)
    ta.set_defaults(func=cmd_task_add)

    for name, helptext in (("approve", "land a blocked task anyway: a human override, with a note"),
                           ("send-back", "send a blocked task back to its builder with an instruction"),
                           ("retry", "resume a blocked task where it stopped")):
        c = sub.add_parser(name, help=helptext)
        _factory_arg(c)
        c.add_argument("task_id")
        if name == "approve":
            c.add_argument("--note", required=True, help="why you override the gates (recorded)")
        if name == "send-back":
            c.add_argument("--instruction", "-m", required=True, help="what the builder must do")
        c.set_defaults(func=cmd_human_action, action_name=name)

    # subcommands that live with their modules: each registers its own
    from . import doctor, init, knowledge, notify, products, rate, report, serve, spend, tail

    for module in (init, products, doctor, knowledge, spend, tail, serve, rate, report, notify):
        module.register(sub, _factory_arg)
    return p


def main(argv: list[str] | None = None) -> int:
    with visible_output():  # nothing a repository or an agent wrote reaches the terminal as a command
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"cockpit: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"cockpit: {e}", file=sys.stderr)
        return 2
    except Refused as e:
        print(f"cockpit: refused: {e.reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# --- commands -------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.build import build_demo

    directory = args.dir or Path(tempfile.mkdtemp(prefix="cockpit-demo-"))
    pace = args.pace if args.pace is not None else 0.0 if args.headless else 0.03
    if pace < 0:
        print("cockpit demo: --pace must be 0 or more seconds", file=sys.stderr)
        return 2
    factory = build_demo(directory, chunk_delay_s=pace)
    print(f"demo factory written to {factory}", file=sys.stderr)
    config = load_factory(factory)
    return _run(config, headless=args.headless, timeout=args.timeout)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    return _run(config, headless=args.headless, timeout=args.timeout, task=args.task)


def _run(config: FactoryConfig, *, headless: bool, timeout: float | None, task: str | None = None) -> int:
    from .preflight import preflight
    from ..factory.runtime import open_factory, run_headless, summary_lines

    preflight(config, warn=lambda w: print(f"cockpit: {w}", file=sys.stderr))  # stops (exit 2) before anything opens
    if headless:
        st = asyncio.run(run_headless(config, timeout=timeout))
        print("\n".join(summary_lines(st)))
        return headless_exit_code(st)

    from ..tui.app import CockpitApp

    async def _app() -> None:
        async with open_factory(config) as f:
            app = CockpitApp(f.store, config, orchestrator=f.orchestrator, open_task=task)
            await app.run_async()
            # the human quit: whatever is still winding down gets a bounded time, never the terminal
            _exit_after(QUIT_GRACE_S)

    asyncio.run(_app())
    return 0


QUIT_GRACE_S = 20.0


def _exit_after(seconds: float) -> None:
    """After `q`, end the process within `seconds` even if something still winding down hangs.

    Seen under heavy load (about 1 run in 8 of the tmux story test at load 20): the screen closed, the process
    stayed. Every event the cockpit recorded is already committed (the store awaits each commit; a kill loses
    nothing), so exiting is safe; this runs the exit hooks (temporary directories) first and says so."""
    import atexit
    import threading
    import time

    def watchdog() -> None:
        time.sleep(seconds)
        print(f"cockpit: still shutting down {seconds:.0f} s after quit; exiting (nothing recorded is lost)",
              file=sys.stderr, flush=True)
        try:
            atexit._run_exitfuncs()
        finally:
            os._exit(0)

    threading.Thread(target=watchdog, name="cockpit-quit-watchdog", daemon=True).start()


# `run --headless` / `demo --headless` exit codes, for scripts and CI (the README lists them)
EXIT_ALL_DONE = 0        # nothing is left open: every task is done
EXIT_WAITS_FOR_YOU = 3   # every task that is not done is blocked: the factory waits for a human
EXIT_STILL_WORKING = 4   # stopped (--timeout) while tasks were still queued or in progress


def headless_exit_code(st: dict) -> int:
    """What a headless run's end means for whoever called it (1 and 2 stay: refused, bad input)."""
    states = [t["state"] for p in st["products"] for t in p["tasks"]]
    if any(s in IN_FLIGHT_STATES for s in states):
        return EXIT_STILL_WORKING
    if TaskState.BLOCKED in states:
        return EXIT_WAITS_FOR_YOU
    return EXIT_ALL_DONE


def cmd_status(args: argparse.Namespace) -> int:
    from ..factory.runtime import summary_lines
    from ..factory.status import status

    config = load_factory(args.factory)
    st = with_store(config, lambda s: status(config, s))
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print("\n".join(summary_lines(st)))
    return 0


def cmd_task_add(args: argparse.Namespace) -> int:
    from ..factory.commands import queue_task

    config = load_factory(args.factory)
    ev = with_store(config, lambda s: queue_task(s, config, product=args.product, title=args.title, body=args.body,
                                                 priority=args.priority, actor=config.factory.human))
    print(ev.task_id)
    return 0


def cmd_human_action(args: argparse.Namespace) -> int:
    from ..factory import commands

    config = load_factory(args.factory)
    actor = config.factory.human

    async def act(store: Store):
        if args.action_name == "approve":
            return await commands.approve_override(store, args.task_id, actor=actor, note=args.note)
        if args.action_name == "send-back":
            return await commands.send_back(store, args.task_id, actor=actor, instruction=args.instruction)
        return await commands.retry(store, args.task_id, actor=actor)

    ev = with_store(config, act)
    print(f"{ev.kind} {ev.task_id} (event {ev.id})")
    return 0
