"""Notifications: a task blocks -> its notice is received at a healthy webhook (p50 / p99, goal p99 < 2 s),
and 100 blocks per second through the outbox (are they all delivered, how late).

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
    return {**m, "rows": [
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
    ]}
