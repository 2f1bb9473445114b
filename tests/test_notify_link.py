"""Links in notices: with `[notify] link_base`, or while `cockpit serve` runs, a notice carries a link to its task
(`…/task/T1`, a page whose cockpit opens on that task); otherwise only the commands that act. Real `cockpit serve`
process on 127.0.0.1, its real websocket, a real store file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import aiohttp
from factory_kit import write_factory
from tui_tools import free_port, served_address, wait_port

from cockpit.config import load_factory
from cockpit.domain.notices import Notice
from cockpit.factory import commands
from cockpit.factory.notify_link import link_base, marker_path, served_url, write_marker
from cockpit.factory.notify_sender import WebhookSender, batch_payload, notifier_for, payload
from cockpit.store import Store

N = Notice(key="blocked:T1:5", kind="blocked", product="shop", task_id="T1", reason="tests",
           actions=['cockpit send-back T1 -m "…"'])


def test_no_link_without_serve_or_link_base_and_one_with_either(tmp_path):
    f = write_factory(tmp_path / "f")
    cfg = load_factory(f)
    assert link_base(cfg) is None
    plain = payload(N.key, N, link_base(cfg))
    assert "link" not in plain and "http" not in plain["text"] and 'cockpit send-back T1 -m "…"' in plain["text"]
    # a serve that is running (this process stands for it): its URL
    write_marker(cfg, "http://127.0.0.1:8123")
    assert link_base(cfg) == "http://127.0.0.1:8123"
    linked = payload(N.key, N, link_base(cfg))
    assert linked["link"] == "http://127.0.0.1:8123/task/T1" and linked["text"].endswith("open: http://127.0.0.1:8123/task/T1")
    assert 'cockpit send-back T1 -m "…"' in linked["text"]  # the command stays
    assert batch_payload([(N.key, N)], base=link_base(cfg))["notices"][0]["link"].endswith("/task/T1")
    # a serve killed with -9 leaves its marker: a pid that is gone means no link
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker_path(cfg).write_text(json.dumps({"url": "http://127.0.0.1:8123", "pid": dead.pid}))
    assert served_url(cfg) is None and link_base(cfg) is None
    # link_base in factory.toml wins, and the sender built from the config uses it
    f.write_text(f.read_text() + '\n[notify]\nterminal = true\nlink_base = "http://box.lan:8000"\n')
    cfg = load_factory(f)
    sender = notifier_for(cfg, None, None)
    assert isinstance(sender, WebhookSender) and sender.link_base() == "http://box.lan:8000"
    # a factory-level notice has no task: no link
    assert "link" not in payload("model:unreachable:3", N.model_copy(update={"task_id": None}), "http://x:1")


ESCAPES = re.compile(r"\x1b\[[0-9;?<>=]*[a-zA-Z~]|\x1b[\]P_][^\x07\x1b]*(?:\x07|\x1b\\)")


async def frames_until(ws, needles: list[str], timeout: float) -> str:
    """The text the served app wrote (escape sequences removed) until every needle is in it, or the timeout."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(n in ESCAPES.sub("", seen) for n in needles):
        try:
            msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.BINARY:
            seen += msg.data.decode("utf-8", "replace")
        elif msg.type == aiohttp.WSMsgType.TEXT:
            seen += msg.data
        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            break
    return ESCAPES.sub("", seen)


async def test_cockpit_serve_is_the_link_and_its_task_page_opens_the_task(tmp_path):
    f = write_factory(tmp_path / "f")
    cfg = load_factory(f)
    store = await Store.open(cfg.store_path)
    tid = (await commands.add_task(store, product="shop", title="Zebra crossing audit")).task_id
    await store.close()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cockpit", "serve", "--port", str(port), "--factory", str(f)],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_port(port, 60), "cockpit serve did not listen"
        deadline = time.monotonic() + 30
        while link_base(cfg) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert link_base(cfg) == f"http://127.0.0.1:{port}"  # the token never goes in a notice
        link = payload("k", N.model_copy(update={"task_id": tid}), link_base(cfg))["link"]
        address = served_address(server.stderr)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(link) as r:
                assert r.status == 403  # a browser that never opened the printed address
            async with http.get(address) as r:
                assert r.status == 200  # the printed address: the page, and the token kept as a cookie
            async with http.get(link) as r:
                page = await r.text()
                assert r.status == 200 and f'/ws/task/{tid}"' in page
            async with http.get(f"http://127.0.0.1:{port}/") as r:
                assert '/ws"' in await r.text()  # the plain page: the main screen, as before
            async with http.get(f"http://127.0.0.1:{port}/task/x;rm") as r:
                assert r.status == 404  # only a task id gets into the command
            # the page's socket: a cockpit opened on the task (its screen's own tabs: 1 Gates … 6 History)
            async with http.ws_connect(f"ws://127.0.0.1:{port}/ws/task/{tid}?width=140&height=40") as ws:
                seen = await frames_until(ws, ["Zebra crossing audit", "1 Gates", "6 History"], 60)
        assert "Zebra crossing audit" in seen and "1 Gates" in seen and "6 History" in seen, seen[-2000:]
    finally:
        os.killpg(server.pid, signal.SIGINT)  # ctrl+c: the marker goes with the server
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    assert not marker_path(cfg).exists() and link_base(cfg) is None
