"""`cockpit serve [--port P]`: the same cockpit in a browser, through textual-serve, on 127.0.0.1 only.

Each browser tab gets its own `cockpit run` process on the factory. The first
one drives the agents; the others watch and act through the same store (see
CockpitApp's factory lock), so two tabs never run the factory twice.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from ..config import load_factory

HOST = "127.0.0.1"
"""Never a public address: the cockpit lands code and spends money."""


def serve_command(factory: str) -> str:
    """The command textual-serve runs for each browser connection."""
    return shlex.join([sys.executable, "-m", "cockpit", "run", "--factory", factory])


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)  # a broken factory.toml fails here, not in every browser tab
    from textual_serve.server import Server

    server = Server(serve_command(str(config.path)), host=HOST, port=args.port,
                    title=f"Cockpit — {config.factory.name}")
    print(f"cockpit: serving {config.path} on http://{HOST}:{args.port}/ (ctrl+c stops)", file=sys.stderr, flush=True)
    server.serve()
    return 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("serve", help="the cockpit in a browser, on 127.0.0.1 (textual-serve)")
    factory_arg(p)
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    p.set_defaults(func=cmd_serve)
