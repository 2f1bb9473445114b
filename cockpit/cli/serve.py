"""`cockpit serve [--port P]`: the same cockpit in a browser, through textual-serve, on 127.0.0.1 only.

Each browser tab gets its own `cockpit run` process on the factory. The first
one drives the agents; the others watch and act through the same store (see
CockpitApp's factory lock), so two tabs never run the factory twice.

A browser tab acts as the human (it can approve, override, raise budgets), so loopback alone is no fence:
any web page the human visits can open a WebSocket to 127.0.0.1, and a DNS-rebinding page can even read
from it. Every request must carry the secret this process prints in its URL (`?token=…`, kept after the
first visit in an HttpOnly, SameSite=Lax cookie: a link in a notice opens the page, but no other site's page
can send it along with a socket or a frame), name this server as its Host, and, when a browser says
where it comes from (Origin), come from this server's own pages.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import shlex
import sys
from collections.abc import Callable

from ..config import load_factory

HOST = "127.0.0.1"
"""Never a public address: the cockpit lands code and spends money."""


def serve_command(factory: str) -> str:
    """The command textual-serve runs for each browser connection."""
    return shlex.join([sys.executable, "-m", "cockpit", "run", "--factory", factory])


TOKEN_COOKIE = "cockpit_serve_token"


def request_guard(token: str, port: int):
    """The aiohttp middleware that lets in only the human's own browser tabs (see the module's docstring)."""
    from aiohttp import web

    hosts = {f"{HOST}:{port}", f"localhost:{port}"}
    origins = {f"http://{h}" for h in hosts}

    def holds(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    @web.middleware
    async def guard(request: web.Request, handler):
        if request.host not in hosts:  # a rebinding page's requests name its own domain
            raise web.HTTPForbidden(text=f"cockpit serve answers only as {HOST}:{port}")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in origins:  # a page of another site (browsers always say so)
            raise web.HTTPForbidden(text="cockpit serve: not from another site's page")
        if holds(request.query.get("token")):
            if request.method == "GET" and request.headers.get("Upgrade", "").lower() != "websocket":
                # into the cookie, out of the address bar and the history
                clean = request.rel_url.without_query_params("token")
                answer = web.HTTPFound(str(clean))
                answer.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Lax", path="/")
                raise answer
            return await handler(request)
        if holds(request.cookies.get(TOKEN_COOKIE)):
            return await handler(request)
        raise web.HTTPForbidden(text="cockpit serve: open the address it printed when it started (it carries a "
                                     "token), then this link works in the same browser")

    return guard


def cockpit_server(command: str, *, port: int, title: str, token: str):
    """textual-serve's Server, plus `/task/T2`: the same page, its cockpit opened on task T2 (`run --task T2`),
    the link a notice carries while this serves (cockpit.factory.notify_link). Every request passes
    `request_guard` first."""
    import copy

    from aiohttp import web
    from textual_serve.server import Server

    from ..factory.notify_link import TASK_ID

    class CockpitServer(Server):
        def _task_id(self, request: web.Request) -> str:
            task_id = request.match_info["task_id"]
            if not TASK_ID.match(task_id):
                raise web.HTTPNotFound(text=f"no task {task_id[:40]!r}: a task id is T and a number, e.g. T2")
            return task_id

        async def handle_task_index(self, request: web.Request) -> web.StreamResponse:
            task_id = self._task_id(request)
            page = await self.handle_index(request)  # textual-serve's page; its socket opens on the task instead
            page.text = page.text.replace('/ws"', f'/ws/task/{task_id}"', 1)
            return page

        async def handle_task_websocket(self, request: web.Request) -> web.StreamResponse:
            task_id = self._task_id(request)
            on_task = copy.copy(self)  # the same server, its command opening the task's screen at start
            on_task.command = f"{self.command} --task {task_id}"
            return await Server.handle_websocket(on_task, request)

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(request_guard(token, port))
            app.add_routes([web.get("/task/{task_id}", self.handle_task_index),
                            web.get("/ws/task/{task_id}", self.handle_task_websocket)])
            return app

    return CockpitServer(command, host=HOST, port=port, title=title)


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)  # a broken factory.toml fails here, not in every browser tab
    from ..factory.notify_link import remove_marker, write_marker

    token = secrets.token_urlsafe(24)
    server = cockpit_server(serve_command(str(config.path)), port=args.port, title=f"Cockpit — {config.factory.name}",
                            token=token)
    url = f"http://{HOST}:{args.port}"
    print(f"cockpit: serving {config.path} on {url}/?token={token} (ctrl+c stops; open that address once, then "
          "task links work in the same browser)", file=sys.stderr, flush=True)
    write_marker(config, url)  # notices link to the task here while this serves (the token never goes in them)
    try:
        server.serve()
    finally:
        remove_marker(config)
    return 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("serve", help="the cockpit in a browser, on 127.0.0.1 (textual-serve)")
    factory_arg(p)
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    p.set_defaults(func=cmd_serve)
