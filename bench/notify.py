"""Notifications: a task blocks -> its notice is received at a healthy webhook (p50 / p99, goal p99 < 2 s),
100 blocks per second through the outbox (are they all delivered, how late), and key -> repaint on the main
screen while 100 blocks a second go through the outbox (goal: ui_load's p99 < 50 ms; anchor: the same presses
with nothing happening).

The receiver is a real HTTP server on 127.0.0.1; the store a real SQLite file; the sender the one the
orchestrator runs (cockpit.factory.notify_sender), with its default poll, woken by the store's commits."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cockpit.domain import Event, Kind
from cockpit.factory.notify_sender import WebhookSender
from cockpit.store import Store

GOAL_P99_S = 2.0


def _receiver() -> tuple[ThreadingHTTPServer, dict[str, float]]:
    got: dict[str, float] = {}

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.setdefault(body["key"], time.time())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, got


async def _run(n_single: int, rate: float, seconds: float) -> dict[str, Any]:
    srv, got = _receiver()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        store = await Store.open(Path(d) / "c.db")
        sender = WebhookSender(store, f"http://127.0.0.1:{srv.server_address[1]}/hook")
        task = asyncio.create_task(sender.run())
        tasks = []
        total = n_single + int(rate * seconds)
        for _ in range(total):  # every task created and started first: a block is then one append
            t = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": "x"}))
            await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="shop", task_id=t.task_id,
                                     data={"agent": "builder-1"}))
            tasks.append(t.task_id)

        async def block(tid: str) -> tuple[str, float]:
            t0 = time.time()
            b = await store.append(Event(kind=Kind.BLOCKED, actor="system", product="shop", task_id=tid,
                                         data={"reasons": ["tests"]}))
            return f"blocked:{tid}:{b.id}", t0

        async def wait_all(keys: list[str], limit: float) -> None:
            end = time.monotonic() + limit
            while not all(k in got for k in keys) and time.monotonic() < end:
                await asyncio.sleep(0.01)

        single = []
        for tid in tasks[:n_single]:  # one at a time, apart: the latency a person sees
            single.append(await block(tid))
            await wait_all([single[-1][0]], 10)
        burst = []
        t_start = time.monotonic()
        for i, tid in enumerate(tasks[n_single:]):
            await asyncio.sleep(max(0.0, t_start + i / rate - time.monotonic()))
            burst.append(await block(tid))
        achieved = len(burst) / (time.monotonic() - t_start)
        await wait_all([k for k, _ in burst], 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
    srv.shutdown()

    def lat(pairs: list[tuple[str, float]]) -> list[float]:
        return sorted(got[k] - t0 for k, t0 in pairs if k in got)

    s, b = lat(single), lat(burst)
    q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("inf")  # noqa: E731
    return {"single_p50": statistics.median(s), "single_p99": q(s, 0.99), "single_n": len(single),
            "single_got": len(s), "burst_rate": achieved, "burst_n": len(burst), "burst_got": len(b),
            "burst_p50": statistics.median(b) if b else float("inf"), "burst_p99": q(b, 0.99)}


def measure(n_single: int = 50, rate: float = 100.0, seconds: float = 3.0) -> dict[str, Any]:
    m = asyncio.run(_run(n_single, rate, seconds))
    keys = keys_under_blocks(rate)
    return {**m, "keys_under_blocks": {k: v for k, v in keys.items() if k != "row"}, "rows": [
        {"what": f"block -> received at a webhook ({m['single_n']} blocks)",
         "figure": f"p50 {m['single_p50'] * 1000:.0f} / p99 {m['single_p99'] * 1000:.0f} ms",
         "goal": f"p99 < {GOAL_P99_S:.0f} s", "anchor": f"{m['single_got']}/{m['single_n']} received",
         "ratio": f"{m['single_p99'] / GOAL_P99_S:.2f} of goal",
         "ok": m["single_p99"] < GOAL_P99_S and m["single_got"] == m["single_n"]},
        {"what": f"{m['burst_rate']:.0f} blocks/s through the outbox ({m['burst_n']})",
         "figure": f"p50 {m['burst_p50'] * 1000:.0f} / p99 {m['burst_p99'] * 1000:.0f} ms",
         "goal": "all received, p99 < 2 s", "anchor": f"{m['burst_got']}/{m['burst_n']} received",
         "ratio": f"{m['burst_p99'] / GOAL_P99_S:.2f} of goal",
         "ok": m["burst_got"] == m["burst_n"] and m["burst_p99"] < GOAL_P99_S and m["burst_rate"] >= 90},
        keys["row"],
    ]}


TASKS = 50  # a busy factory's open tasks: each blocks again and again (retried in between), 100 times a second in all
RECEIVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
out = open(sys.argv[1], "a", buffering=1)
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for k in body.get("keys") or [body["key"]]:
            out.write(k + "\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


async def _keys_under_blocks(rate: float, seconds: float, with_sender: bool = True) -> dict[str, Any]:
    """Key press -> repaint on the main screen while `rate` blocks a second go through the outbox to a webhook
    (the sender in the app's own loop, as the orchestrator runs it), against the same presses with nothing
    happening. 50 tasks on screen, each blocked, retried and blocked again. The receiver is another process (as a
    real one is: it takes no time from this one)."""
    import subprocess
    import sys

    from textual import events
    from textual._compositor import CompositorUpdate

    from ui_load import GOAL_KEY_P99_S, KEY_EVERY_S, _pct

    from cockpit.config import FactoryConfig, FactorySection, ProductConfig
    from cockpit.tui.app import CockpitApp

    products = ["shop", "blog"]
    config = FactoryConfig(factory=FactorySection(name="bench"),
                           products=[ProductConfig(name=p, path=p, test_command="true") for p in products])
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        got_file = Path(d) / "got.txt"
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(got_file)], stdout=subprocess.PIPE, text=True)
        try:
            port = int(receiver.stdout.readline())  # type: ignore[union-attr]
            store = await Store.open(Path(d) / "memory" / "cockpit.db")
            tasks = []
            for i in range(TASKS):  # created and started first; each then blocks, is retried, blocks again, …
                p = products[i % 2]
                t = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product=p,
                                             data={"title": f"task {i}"}))
                await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product=p, task_id=t.task_id,
                                         data={"agent": "builder-1"}))
                tasks.append((p, t.task_id))
            probe: dict[str, Any] = {}
            key_lat: list[float] = []

            class TimedApp(CockpitApp):
                def _display(self, screen, renderable) -> None:  # type: ignore[override]
                    if isinstance(renderable, CompositorUpdate):
                        renderable.render_segments(self.console)  # what a terminal repaint costs
                    super()._display(screen, renderable)
                    if renderable is not None and probe and probe["table"].cursor_row != probe["before"]:
                        key_lat.append(time.perf_counter() - probe["t0"])
                        probe.clear()

            app = TimedApp(store, config)
            sender = WebhookSender(store, f"http://127.0.0.1:{port}/hook")

            async def press_keys(until: float) -> list[float]:
                table = app.main_screen.panes[products[0]].table
                table.focus()
                table.move_cursor(row=1)
                i = 0
                while time.perf_counter() < until:
                    probe.clear()
                    probe.update(table=table, before=table.cursor_row, t0=time.perf_counter())
                    key = events.Key(["down", "up"][i % 2], None)
                    key.set_sender(app)
                    app._driver.send_message(key)  # as the terminal driver does
                    i += 1
                    await asyncio.sleep(KEY_EVERY_S)
                out = list(key_lat)
                key_lat.clear()
                return out

            async def blocks() -> tuple[list[str], float]:
                keys, t_start, total = [], time.monotonic(), int(rate * seconds)
                for i in range(total):
                    p, tid = tasks[i % len(tasks)]
                    await asyncio.sleep(max(0.0, t_start + i / rate - time.monotonic()))
                    if i >= len(tasks):  # blocked in the previous round: the human's retry first
                        await store.append(Event(kind=Kind.RETRY, actor="human:you", product=p, task_id=tid))
                    b = await store.append(Event(kind=Kind.BLOCKED, actor="system", product=p, task_id=tid,
                                                 data={"reasons": ["tests"]}))
                    keys.append(f"blocked:{tid}:{b.id}")
                return keys, total / (time.monotonic() - t_start)

            try:
                async with app.run_test(size=(160, 48)) as pilot:
                    await pilot.pause(0.5)
                    quiet = await press_keys(time.perf_counter() + 3.0)
                    running = asyncio.create_task(sender.run() if with_sender else asyncio.sleep(3600))
                    load = asyncio.create_task(blocks())
                    loaded = await press_keys(time.perf_counter() + seconds)
                    keys, achieved = await load
                    end = time.monotonic() + 30
                    while time.monotonic() < end and len(set(got_file.read_text().split()) & set(keys)) < len(keys):
                        await asyncio.sleep(0.05)
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
            finally:
                await store.close()
            received = len(set(got_file.read_text().split()) & set(keys))
        finally:
            receiver.kill()
            receiver.wait()
    return {"blocks": len(keys), "received": received, "block_rate": achieved, "keys": len(loaded),
            "key_p50_s": _pct(loaded, 0.5), "key_p99_s": _pct(loaded, 0.99),
            "quiet_p50_s": _pct(quiet, 0.5), "quiet_p99_s": _pct(quiet, 0.99), "goal_s": GOAL_KEY_P99_S}


def keys_under_blocks(rate: float = 100.0, seconds: float = 8.0) -> dict[str, Any]:
    """The run with the sender, and the same blocks without it: what the outbox's delivery adds to the screen's
    own cost of 100 task state changes a second."""
    m = asyncio.run(_keys_under_blocks(rate, seconds))
    bare = asyncio.run(_keys_under_blocks(rate, seconds, with_sender=False))
    m["no_sender_p50_s"], m["no_sender_p99_s"], m["no_sender_rate"] = bare["key_p50_s"], bare["key_p99_s"], \
        bare["block_rate"]
    ms = 1000
    return {**m, "row": {
        "what": f"key → repaint, {m['block_rate']:.0f} blocks/s through the outbox",
        "figure": f"p50 {m['key_p50_s'] * ms:.0f} / p99 {m['key_p99_s'] * ms:.0f} ms ({m['keys']} keys)",
        "goal": f"p99 < {m['goal_s'] * ms:.0f} ms, all received",
        "anchor": f"quiet p99 {m['quiet_p99_s'] * ms:.0f} ms; same blocks, no sender: p99 "
                  f"{m['no_sender_p99_s'] * ms:.0f} ms ({m['no_sender_rate']:.0f}/s); "
                  f"{m['received']}/{m['blocks']} received",
        "ratio": f"{m['key_p99_s'] / m['no_sender_p99_s']:.1f}x no sender",
        "ok": m["key_p99_s"] < m["goal_s"] and m["received"] == m["blocks"] and m["block_rate"] >= 90}}


if __name__ == "__main__":
    r = keys_under_blocks()
    print({k: v for k, v in r.items() if k != "row"})
    print(r["row"])
