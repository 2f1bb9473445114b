"""`cockpit serve` answers only the human's own browser tabs (cockpit/cli/serve.py `request_guard`).

The attack (found by an adversary session): any web page the human visits opens
`ws://127.0.0.1:8000/ws/task/T1`, types `a`, a note and enter, and a human override is recorded in the
human's name; a DNS-rebinding page does the same under its own host name. Liveness: without the guard the
cross-site socket is accepted and its cockpit process starts; with it, the page gets 403 without the token,
from another site even with it, and under another Host name. The human's own tab (the printed address, then
its cookie) still gets the page, a task link and its socket.
"""

from __future__ import annotations

import sys

import aiohttp
import pytest
from aiohttp import web

from cockpit.cli.serve import HOST, TOKEN_COOKIE, cockpit_server
from tui_tools import free_port

TOKEN = "s3cret-token-for-the-test"
EVIL = "http://evil.example"


async def _serve(port: int, marker, *, guarded: bool) -> web.AppRunner:
    # each socket starts this command: it leaves a marker, as `cockpit run` would act
    command = f"{sys.executable} -c \"open({str(marker)!r}, 'a').write('started\\n')\""
    server = cockpit_server(command, port=port, title="t", token=TOKEN)
    app = await server._make_app()
    if not guarded:  # the defence off: textual-serve and our routes as they were
        app.middlewares.clear()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    return runner


async def _socket_status(port: int, *, origin: str, cookie: str | None = None, host: str | None = None,
                         query: str = "") -> int:
    headers = {"Origin": origin, **({"Host": host} if host else {})}
    if cookie:
        headers["Cookie"] = f"{TOKEN_COOKIE}={cookie}"
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(f"ws://{HOST}:{port}/ws/task/T1?width=80&height=24{query}", headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


@pytest.mark.parametrize("guarded", [False, True])
async def test_a_cross_site_page_cannot_open_the_cockpit(tmp_path, guarded):
    port, marker = free_port(), tmp_path / "started"
    runner = await _serve(port, marker, guarded=guarded)
    try:
        status = await _socket_status(port, origin=EVIL)
        if not guarded:
            assert status == 101  # liveness: the attack lands, the page has a cockpit of its own
            return
        assert status == 403
        assert await _socket_status(port, origin=EVIL, cookie=TOKEN) == 403  # the token does not help another site
        assert await _socket_status(port, origin=EVIL, query=f"&token={TOKEN}") == 403
        # DNS rebinding: the page's own origin, under its own host name
        assert await _socket_status(port, origin="http://rebind.example:%d" % port, host=f"rebind.example:{port}",
                                    cookie=TOKEN) == 403
        assert await _socket_status(port, origin=f"http://{HOST}:{port}") == 403  # same origin, no token
        assert await _socket_status(port, origin=f"http://{HOST}:{port}", cookie="guess") == 403
        assert not marker.exists()  # no cockpit process started for any of them
    finally:
        await runner.cleanup()


async def test_the_humans_tab_gets_the_page_the_link_and_the_socket(tmp_path):
    port, marker = free_port(), tmp_path / "started"
    runner = await _serve(port, marker, guarded=True)
    base = f"http://{HOST}:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{base}/task/T2") as r:
                assert r.status == 403 and "token" in await r.text()
            async with http.get(f"{base}/?token=wrong") as r:
                assert r.status == 403
            async with http.get(f"{base}/?token={TOKEN}", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/"  # the token leaves the address bar
                cookie = r.cookies[TOKEN_COOKIE]
                assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Lax"
            http.cookie_jar.update_cookies({TOKEN_COOKIE: TOKEN})
            async with http.get(f"{base}/") as r:
                assert r.status == 200 and '/ws"' in await r.text()
            async with http.get(f"{base}/task/T2") as r:  # a notice's link, in the same browser
                assert r.status == 200 and '/ws/task/T2"' in await r.text()
        assert await _socket_status(port, origin=base, cookie=TOKEN) == 101
    finally:
        await runner.cleanup()
