"""The cockpit under load: 20 scripted agents streaming 50 events/s each into a running app (run_test).

Figures: key press → repaint (p50/p99) and event → on screen (p50/p99). Goals (issue 6): p99 < 50 ms and
p99 < 150 ms. Anchors from the same run: the same key presses with the factory quiet, and the bridge's
coalescing interval (the floor of event → screen by design).

A repaint is the app's `_display` of a compositor update, serialised for a terminal as a real one would be.
"Shown" means the main screen has consumed the batch holding the event and the next repaint went out.

    python bench/ui_load.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AGENTS = 20
RATE = 50  # events per second per agent
SECONDS = 10.0
KEY_EVERY_S = 0.1
GOAL_KEY_P99_S = 0.050
GOAL_EVENT_P99_S = 0.150


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _run(*, agents: int, rate: int, seconds: float) -> dict[str, Any]:
    from textual import events
    from textual._compositor import CompositorUpdate

    from cockpit.config import FactoryConfig, FactorySection, ProductConfig
    from cockpit.domain.events import Event, Kind
    from cockpit.factory.commands import add_task
    from cockpit.store import Store
    from cockpit.tui.app import CockpitApp
    from cockpit.tui.bridge import DEFAULT_INTERVAL

    products = [f"p{i}" for i in range(5)]
    config = FactoryConfig(factory=FactorySection(name="bench"),
                           products=[ProductConfig(name=p, path=p, test_command="true", budget_usd=100) for p in products])
    root = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    store = await Store.open(root / "memory" / "cockpit.db")
    tasks: list[tuple[str, str, str]] = []  # (agent, product, task)
    for i in range(agents):
        product = products[i % len(products)]
        tid = (await add_task(store, product=product, title=f"Task {i}", actor="human:you")).task_id
        agent = f"builder-{i + 1}"
        await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product=product, task_id=tid,
                                 data={"agent": agent}))
        await store.append(Event(kind=Kind.AGENT_STARTED, actor=agent, product=product, task_id=tid,
                                 data={"role": "builder"}))
        tasks.append((agent, product, tid))

    paints: list[float] = []
    key_lat: list[float] = []
    event_lat: list[float] = []
    pending_events: deque[tuple[int, float]] = deque()
    probe: dict[str, Any] = {}

    class TimedApp(CockpitApp):
        def _display(self, screen, renderable) -> None:  # type: ignore[override]
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(self.console)  # what a terminal repaint costs
            super()._display(screen, renderable)
            if renderable is None:
                return
            now, wall = time.perf_counter(), time.time()
            paints.append(now)
            if probe and probe["table"].cursor_row != probe["before"]:
                key_lat.append(now - probe["t0"])
                probe.clear()
            try:
                shown = self.main_screen.activity.last_event_id
            except Exception:
                return
            while pending_events and pending_events[0][0] <= shown:
                event_lat.append(wall - pending_events.popleft()[1])

    app = TimedApp(store, config)
    stop = asyncio.Event()

    async def agent(name: str, product: str, tid: str) -> None:
        n, period = 0, 1.0 / rate
        start = time.perf_counter()
        while not stop.is_set():
            n += 1
            if n % 5:
                ev = Event(kind=Kind.AGENT_TEXT, actor=name, product=product, task_id=tid, data={"text": f"step {n}\n"})
            else:
                ev = Event(kind=Kind.AGENT_TOOL, actor=name, product=product, task_id=tid,
                           data={"name": "write_file", "input": {"path": f"{product}/f{n}.py"}})
            store.post(ev)
            await asyncio.sleep(max(start + n * period - time.perf_counter(), 0))

    async def watch() -> None:
        sub = store.subscribe()
        try:
            while True:
                ev = await sub.get()
                if ev.kind in (Kind.AGENT_TEXT, Kind.AGENT_TOOL) and ev.id is not None:
                    pending_events.append((ev.id, ev.ts))
        finally:
            sub.close()

    async def press_keys(until: float, out: list[float]) -> None:
        table = app.main_screen.panes[products[0]].table
        table.focus()
        await asyncio.sleep(0.2)
        keys = ["down", "up"]
        i = 0
        while time.perf_counter() < until:
            probe.clear()
            probe.update(table=table, before=table.cursor_row, t0=time.perf_counter())
            key = events.Key(keys[i % 2], None)
            key.set_sender(app)
            app._driver.send_message(key)  # as the terminal driver does
            i += 1
            await asyncio.sleep(KEY_EVERY_S)
        out.extend(key_lat)
        key_lat.clear()

    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(0.5)
            quiet: list[float] = []
            await press_keys(time.perf_counter() + 3.0, quiet)
            watcher = asyncio.create_task(watch())
            runners = [asyncio.create_task(agent(*t)) for t in tasks]
            t_start = time.perf_counter()
            await asyncio.sleep(1.0)  # warm up
            event_lat.clear()
            loaded: list[float] = []
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await press_keys(time.perf_counter() + seconds, loaded)
            cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
            stop.set()
            await asyncio.gather(*runners)
            elapsed = time.perf_counter() - t_start
            watcher.cancel()
            sent = (await store.query("SELECT COUNT(*) FROM events WHERE kind IN (?, ?)",
                                      (Kind.AGENT_TEXT.value, Kind.AGENT_TOOL.value)))[0][0]
    finally:
        await store.close()
    return {
        "agents": agents, "rate_per_agent": rate, "events": sent, "events_per_s": sent / elapsed,
        "key_p50_s": _pct(loaded, 0.5), "key_p99_s": _pct(loaded, 0.99), "keys": len(loaded),
        "quiet_key_p50_s": _pct(quiet, 0.5), "quiet_key_p99_s": _pct(quiet, 0.99),
        "event_p50_s": _pct(event_lat, 0.5), "event_p99_s": _pct(event_lat, 0.99), "events_timed": len(event_lat),
        "bridge_interval_s": DEFAULT_INTERVAL, "cpu_share": cpu_share, "paints_per_s": len(paints) / elapsed if elapsed else 0.0,
    }


REPEATS = 3


def measure(agents: int = AGENTS, rate: int = RATE, seconds: float = SECONDS, repeats: int = REPEATS) -> dict[str, Any]:
    """The median run (by key p99) of `repeats`, with the spread of the p99s (a p99 of 100 presses is noisy)."""
    runs = [asyncio.run(_run(agents=agents, rate=rate, seconds=seconds)) for _ in range(repeats)]
    runs.sort(key=lambda r: r["key_p99_s"])
    mid = dict(runs[len(runs) // 2])
    mid["key_p99_spread_s"] = (runs[0]["key_p99_s"], runs[-1]["key_p99_s"])
    ev = sorted(r["event_p99_s"] for r in runs)
    mid["event_p99_s"], mid["event_p99_spread_s"] = ev[len(ev) // 2], (ev[0], ev[-1])
    mid["repeats"] = repeats
    return mid


def bench_rows() -> dict[str, Any]:
    m = measure()
    ms = 1000
    return {**m, "rows": [
        {"what": f"key → repaint, {m['agents']} agents × {m['rate_per_agent']} ev/s",
         "figure": f"p50 {m['key_p50_s'] * ms:.0f} / p99 {m['key_p99_s'] * ms:.0f} ms "
                   f"(p99 {m['key_p99_spread_s'][0] * ms:.0f}-{m['key_p99_spread_s'][1] * ms:.0f} over {m['repeats']} runs)",
         "goal": f"p99 < {GOAL_KEY_P99_S * ms:.0f} ms",
         "anchor": f"quiet p50 {m['quiet_key_p50_s'] * ms:.0f} / p99 {m['quiet_key_p99_s'] * ms:.0f} ms",
         "ratio": f"{m['key_p99_s'] / m['quiet_key_p99_s']:.1f}x quiet", "ok": m["key_p99_s"] < GOAL_KEY_P99_S},
        {"what": f"event → screen ({m['events_per_s']:,.0f} ev/s, {m['cpu_share']:.0%} of a core)",
         "figure": f"p50 {m['event_p50_s'] * ms:.0f} / p99 {m['event_p99_s'] * ms:.0f} ms "
                   f"(p99 {m['event_p99_spread_s'][0] * ms:.0f}-{m['event_p99_spread_s'][1] * ms:.0f})",
         "goal": f"p99 < {GOAL_EVENT_P99_S * ms:.0f} ms",
         "anchor": f"bridge interval {m['bridge_interval_s'] * ms:.0f} ms",
         "ratio": f"{m['event_p99_s'] / m['bridge_interval_s']:.1f}x interval", "ok": m["event_p99_s"] < GOAL_EVENT_P99_S},
    ]}


if __name__ == "__main__":
    r = bench_rows()
    for row in r["rows"]:
        print(f"{row['what']}: {row['figure']} (goal {row['goal']}; {row['anchor']}; {row['ratio']}) "
              f"{'pass' if row['ok'] else 'FAIL'}")
    print(f"{r['events']:,} events in, {r['events_timed']:,} timed on screen, {r['keys']} key presses, "
          f"{r['paints_per_s']:.0f} repaints/s; this process got {r['cpu_share']:.0%} of a core while loaded "
          f"(os.getloadavg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
