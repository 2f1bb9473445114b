"""`cockpit serve`: the cockpit in a browser. The test serves a factory on 127.0.0.1, opens it in Debian's headless
chromium (installed by the set-up if missing), and finds the product names in the page.

The page draws the terminal with xterm.js on a canvas, so there is no text in the DOM until the terminal's
screen-reader mode is on (the accessibility tree xterm.js keeps for screen readers mirrors every row). The
test turns it on through the Chrome DevTools Protocol before the page's script runs, reads that tree, and
keeps a screenshot of the page next to the test's temp files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from factory_kit import write_factory
from tui_tools import ensure_tool, free_port, served_address, wait_port

REPO = Path(__file__).resolve().parents[1]

# Runs before the page's own script: the terminal object textual-serve creates is handed to the page's window,
# with xterm.js's screen-reader mode on (its accessibility tree is plain DOM text).
EXPOSE_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (value && value.options) { value.options.screenReaderMode = true; window.__cockpitTerminal = value; }
  },
});
"""
READ_PAGE = "(document.querySelector('.xterm-accessibility') || document.body).innerText"


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class DevTools:
    """A minimal Chrome DevTools Protocol client on one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        call_id = self.next_id
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive(timeout=60)).data)
            if msg.get("id") == call_id:
                assert "error" not in msg, msg
                return msg.get("result", {})


async def read_page(debug_port: int, url: str, names: list[str], shot: Path, timeout: float) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{debug_port}/json/list") as r:
            pages = [t for t in await r.json() if t.get("type") == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=64 * 2**20) as ws:
            cdp = DevTools(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=EXPOSE_TERMINAL)
            await cdp.call("Page.navigate", url=url)
            deadline = time.monotonic() + timeout
            text = ""
            while time.monotonic() < deadline:
                got = await cdp.call("Runtime.evaluate", expression=READ_PAGE, returnByValue=True)
                text = str(got.get("result", {}).get("value") or "")
                if all(name in text for name in names):
                    break
                await asyncio.sleep(0.5)
            png = await cdp.call("Page.captureScreenshot", format="png")
            shot.write_bytes(base64.b64decode(png["data"]))
            return text


@pytest.mark.timeout(300)
def test_cockpit_serve_shows_the_products_in_headless_chromium(tmp_path):
    chromium = ensure_tool("chromium", "chromium")
    factory = write_factory(tmp_path / "f", products=("shop", "blog"))
    port, debug = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "cockpit", "serve", "--port", str(port), "--factory", str(factory)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    browser = None
    try:
        assert wait_port(port, 60), "cockpit serve did not listen"
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium'}", f"--remote-debugging-port={debug}", "--window-size=1400,900",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        assert wait_port(debug, 60), "chromium did not start"
        shot = tmp_path / "cockpit-in-chromium.png"
        wanted = ["Cockpit — t", "shop", "blog", "nothing needs you", "Activity"]  # title, panes, status, stream
        text = asyncio.run(read_page(debug, served_address(server.stdout), wanted, shot, 120))
        assert all(w in text for w in wanted), text[:3000]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        if browser is not None:
            kill_group(browser)
        kill_group(server)
