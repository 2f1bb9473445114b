"""Crash test: `kill -9` the headless factory at random moments, restart it, and check nothing was lost.

    python -m bench.crash [--kills 20] [--seed N] [--dir D]

Runs `cockpit run --headless` on the demo factory as a real subprocess, kills it with
SIGKILL after a random delay, lets whatever it had started finish or die (bwrap dies
with its parent, git runs to its end, as after a real kill), checks the store file
and the product repos, and starts it again. When a run finishes by itself (nothing
left to drive), the human sends the blocked task back (as the README says) and, once
everything is done, a fresh demo factory starts the next generation.

After every kill, against the snapshot taken after the previous one:
- no committed event lost: every event seen before is still there, byte for byte;
- event ids are exactly 1..N (strictly increasing, no gap);
- the task projection equals the fold of the events (restart rebuilds all state);
- no task lost; every commit the store names exists in the product repo;
- the spend ledger balances: one spend.reserved event per row, one settlement per
  settled/unsettled row, each task's spend equals its rows' settled sum, and the
  reservations a kill left 'reserved' are 'unsettled' (still counted) after the restart;
and when a run ends by itself: no task open, worktrees and branches agree with the store.
`tests/test_crash.py` runs 5 kills; `make bench` runs 20 and prints the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cockpit.cli import EXIT_ALL_DONE, EXIT_WAITS_FOR_YOU
from cockpit.domain.events import Event
from cockpit.domain.tasks import Task, TaskState, fold

AT_REST = (EXIT_ALL_DONE, EXIT_WAITS_FOR_YOU)  # a headless run that ended: all done, or tasks wait for the human

SEND_BACK = "Use Decimal with ROUND_HALF_UP"


class CrashCheckFailed(AssertionError):
    pass


@dataclass
class Counts:
    kills: int = 0
    runs_finished: int = 0
    generations: int = 0
    events_checked: int = 0
    ledger_rows_checked: int = 0
    tasks_checked: int = 0
    reservations_reconciled: int = 0
    worktrees_checked: int = 0
    recoveries: list[dict] = field(default_factory=list)

    def line(self) -> str:
        return (f"kills survived: {self.kills}, runs that finished: {self.runs_finished}, "
                f"generations: {self.generations}, events checked: {self.events_checked}, "
                f"ledger rows checked: {self.ledger_rows_checked}, tasks checked: {self.tasks_checked}, "
                f"orphaned reservations reconciled: {self.reservations_reconciled}, "
                f"worktrees checked: {self.worktrees_checked}")


@dataclass
class Snapshot:
    events: list[tuple]
    ledger: dict[str, tuple]
    tasks: dict[str, Task]


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=repo, capture_output=True,
                          text=True, check=check)


def read_store(db: Path) -> Snapshot:
    con = sqlite3.connect(db)
    try:
        events = con.execute("SELECT id, ts, kind, actor, product, task_id, data FROM events ORDER BY id").fetchall()
        ledger = {r[0]: r for r in con.execute(
            "SELECT call_id, task_id, state, reserved_usd, settled_usd FROM ledger").fetchall()}
        tasks = {r[0]: Task.model_validate_json(r[1]) for r in con.execute("SELECT id, body FROM tasks")}
    finally:
        con.close()
    return Snapshot(events, ledger, tasks)


def check_snapshot(prev: Snapshot | None, snap: Snapshot, factory: Path, counts: Counts) -> None:
    def fail(msg: str) -> None:
        raise CrashCheckFailed(f"{factory}: {msg}")

    ids = [e[0] for e in snap.events]
    if ids != list(range(1, len(ids) + 1)):
        fail(f"event ids are not 1..{len(ids)}: {ids[:5]}...")
    if prev is not None:
        if snap.events[: len(prev.events)] != prev.events:
            lost = next(i for i, (a, b) in enumerate(zip(prev.events, snap.events, strict=False)) if a != b) \
                if len(snap.events) >= len(prev.events) else len(snap.events)
            fail(f"a committed event changed or vanished at index {lost}")
        missing = set(prev.tasks) - set(snap.tasks)
        if missing:
            fail(f"tasks lost: {sorted(missing)}")
    counts.events_checked += len(snap.events)

    evs = [Event(id=e[0], ts=e[1], kind=e[2], actor=e[3], product=e[4], task_id=e[5], data=json.loads(e[6]))
           for e in snap.events]
    folded = fold(evs)
    if set(folded) != set(snap.tasks):
        fail(f"tasks table {sorted(snap.tasks)} != tasks in the log {sorted(folded)}")
    for tid, t in folded.items():
        if t != snap.tasks[tid]:
            fail(f"task {tid}: the stored projection differs from the fold of its events")
        repo = factory.parent / "products" / t.product
        for sha in t.commits + ([t.merged_commit] if t.merged_commit else []):
            if _git(repo, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode != 0:
                fail(f"task {tid}: commit {sha} named in the store is not in {repo}")
    counts.tasks_checked += len(folded)

    reserved_events = {e.data.get("call_id") for e in evs if e.kind == "spend.reserved"}
    settled_events: dict[str, int] = {}
    for e in evs:
        if e.kind in ("spend.settled", "spend.settled_untasked") and e.data.get("call_id"):
            settled_events[e.data["call_id"]] = settled_events.get(e.data["call_id"], 0) + 1
    by_task: dict[str, float] = {}
    for call_id, task_id, state, _reserved, settled_usd in snap.ledger.values():
        if call_id not in reserved_events:
            fail(f"ledger row {call_id} has no spend.reserved event")
        if state == "reserved" and call_id in settled_events:
            fail(f"ledger row {call_id} is 'reserved' but was settled")
        if state != "reserved" and call_id not in settled_events:
            fail(f"ledger row {call_id} is {state!r} with no settlement event")
        if task_id:
            by_task[task_id] = by_task.get(task_id, 0.0) + settled_usd
    if len(reserved_events) != len(snap.ledger):
        fail(f"{len(reserved_events)} reservations recorded, {len(snap.ledger)} ledger rows")
    for tid, t in folded.items():
        spent = t.spend_usd + t.simulated_usd  # real and simulated are kept apart; together they are its rows
        if abs(spent - by_task.get(tid, 0.0)) > 1e-6:
            fail(f"task {tid}: spend {spent} != its ledger rows' settled sum {by_task.get(tid, 0.0)}")
    if prev is not None:
        # a restart that got as far as recovery reconciled every reservation the kill before left open
        recovered_after = [e for e in evs[len(prev.events):] if e.kind == "factory.recovered"]
        started_after = any(e.kind == "agent.started" for e in evs[len(prev.events):])
        if recovered_after or started_after:
            for call_id, row in prev.ledger.items():
                if row[2] == "reserved" and snap.ledger[call_id][2] == "reserved":
                    fail(f"reservation {call_id} left by a kill was not reconciled at start-up")
    counts.ledger_rows_checked += len(snap.ledger)


def check_at_rest(snap: Snapshot, factory: Path, counts: Counts) -> None:
    """The run ended by itself: nothing open, and the worktrees and branches agree with the store."""
    root = factory.parent
    for tid, t in snap.tasks.items():
        if t.state not in (TaskState.DONE, TaskState.BLOCKED):
            raise CrashCheckFailed(f"{factory}: task {tid} is still {t.state.value} after the run ended")
        repo = root / "products" / t.product
        wt = root / "worktrees" / t.product / tid
        listed = {os.path.realpath(line.split(" ", 1)[1]) for line in
                  _git(repo, "worktree", "list", "--porcelain").stdout.splitlines() if line.startswith("worktree ")}
        if t.state == TaskState.DONE:
            if wt.exists() or os.path.realpath(wt) in listed:
                raise CrashCheckFailed(f"{factory}: task {tid} is done but its worktree {wt} is still there")
            if _git(repo, "merge-base", "--is-ancestor", t.merged_commit or "", "refs/heads/main",
                    check=False).returncode != 0:
                raise CrashCheckFailed(f"{factory}: task {tid}'s merge {t.merged_commit} is not on main")
        elif t.commit:
            if not wt.is_dir() or os.path.realpath(wt) not in listed:
                raise CrashCheckFailed(f"{factory}: blocked task {tid} has no registered worktree at {wt}")
        if t.commit and _git(repo, "merge-base", "--is-ancestor", t.commit, f"refs/heads/cockpit/{tid}",
                             check=False).returncode != 0:
            raise CrashCheckFailed(f"{factory}: task {tid}'s commit {t.commit} is not on branch cockpit/{tid}")
        scratch = [p for p in listed if "/worktrees/.merge/" in p]
        if scratch:
            raise CrashCheckFailed(f"{factory}: scratch merge worktrees left behind: {scratch}")
        counts.worktrees_checked += 1
    for call_id, row in snap.ledger.items():
        if row[2] == "reserved":
            raise CrashCheckFailed(f"{factory}: ledger row {call_id} still 'reserved' after a clean end")


def _drain_group(pgid: int, grace_s: float = 15.0) -> None:
    """Let what the killed process started end as it would (bwrap dies with it, git finishes), then kill the rest."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _cockpit(*args: str, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "COCKPIT_FACTORY")}
    return subprocess.Popen([sys.executable, "-m", "cockpit", *args], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def new_generation(base: Path, n: int, tasks: int | None = None) -> Path:
    """The demo factory and its live tasks (not its simulated history: only live work can be killed)."""
    import asyncio

    from cockpit.config import load_factory
    from cockpit.demo.build import DEMO_TASKS, queue_demo_tasks, write_demo
    from cockpit.factory.commands import add_task
    from cockpit.store import Store

    factory = write_demo(base / f"gen{n}", chunk_delay_s=0.01)
    cfg = load_factory(factory)

    async def queue() -> None:
        store = await Store.open(cfg.store_path)
        try:
            if tasks is None:
                await queue_demo_tasks(store, cfg.factory.human)
            else:
                for product, title, body in DEMO_TASKS[:tasks]:
                    await add_task(store, product=product, title=title, body=body, actor=cfg.factory.human)
        finally:
            await store.close()

    asyncio.run(queue())
    return factory


def _event_count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _wait_for_work(proc: subprocess.Popen, db: Path, before: int, limit_s: float = 120.0) -> None:
    """Until the restarted factory has committed something new (or ended): a kill before that tests only start-up."""
    deadline = time.monotonic() + limit_s
    while proc.poll() is None and time.monotonic() < deadline and _event_count(db) <= before:
        time.sleep(0.05)


def run(kills: int, *, seed: int, base: Path, say=print, max_delay_s: float = 3.0, tasks: int | None = None) -> Counts:
    """`kills` kills, each a random time (up to max_delay_s) after the restarted factory's first new event."""
    rng = random.Random(seed)
    counts = Counts()
    factory = new_generation(base, 0, tasks)
    prev: Snapshot | None = None
    sent_back = False
    log_path = base / "cockpit.log"
    with open(log_path, "ab") as log:
        while counts.kills < kills:
            db = factory.parent / "memory" / "cockpit.db"
            before = _event_count(db)
            proc = _cockpit("run", "--headless", "--factory", str(factory), "--timeout", "300", log=log)
            _wait_for_work(proc, db, before)
            delay = rng.uniform(0.0, max_delay_s)
            try:
                proc.wait(timeout=delay)
                finished = True
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                finished = False
            _drain_group(proc.pid)
            snap = read_store(factory.parent / "memory" / "cockpit.db")
            check_snapshot(prev, snap, factory, counts)
            prev = snap
            if not finished:
                counts.kills += 1
                say(f"kill {counts.kills}/{kills} after {delay:.2f}s: {len(snap.events)} events, "
                    f"{len(snap.ledger)} ledger rows, tasks "
                    + ", ".join(f"{t.id}={t.state.value}" for t in snap.tasks.values()))
                continue
            if proc.returncode not in AT_REST:
                raise CrashCheckFailed(f"{factory}: cockpit exited {proc.returncode}; see {log_path}")
            counts.runs_finished += 1
            check_at_rest(snap, factory, counts)
            blocked = [t for t in snap.tasks.values() if t.state == TaskState.BLOCKED]
            if blocked and not sent_back:
                for t in blocked:  # the human steps in, through the CLI, between runs
                    rc = _cockpit("send-back", t.id, "-m", SEND_BACK, "--factory", str(factory), log=log).wait()
                    if rc != 0:
                        raise CrashCheckFailed(f"{factory}: send-back {t.id} exited {rc}; see {log_path}")
                sent_back = True
                continue
            counts.generations += 1
            say(f"generation {counts.generations} at rest: "
                + ", ".join(f"{t.id}={t.state.value}" for t in snap.tasks.values()))
            factory, prev, sent_back = new_generation(base, counts.generations, tasks), None, False
    # the last generation runs to its end without a kill: everything at rest and reconciled
    with open(log_path, "ab") as log:
        proc = _cockpit("run", "--headless", "--factory", str(factory), "--timeout", "300", log=log)
        if proc.wait() not in AT_REST:
            raise CrashCheckFailed(f"{factory}: the final run exited {proc.returncode}; see {log_path}")
        _drain_group(proc.pid)
    snap = read_store(factory.parent / "memory" / "cockpit.db")
    check_snapshot(prev, snap, factory, counts)
    check_at_rest(snap, factory, counts)
    counts.runs_finished += 1
    counts.reservations_reconciled = sum(
        len(e.data.get("reservations_reconciled", [])) for e in _recoveries(factory, base))
    return counts


def _recoveries(factory: Path, base: Path) -> list[Event]:
    out = []
    for db in sorted(base.glob("gen*/memory/cockpit.db")):
        con = sqlite3.connect(db)
        try:
            for data, in con.execute("SELECT data FROM events WHERE kind = 'factory.recovered'"):
                out.append(Event(kind="factory.recovered", actor="system", data=json.loads(data)))
        finally:
            con.close()
    return out


def bench_rows(kills: int = 20) -> dict:
    """For `make bench`: the full run (20 kills, every demo task), as rows."""
    seed = random.randrange(1 << 30)
    base = Path(tempfile.mkdtemp(prefix="cockpit-crash-", dir=os.environ.get("BENCH_TMP")))
    started = time.monotonic()
    c = run(kills, seed=seed, base=base, say=lambda line: print(f"    {line}", file=sys.stderr))
    took = f"{time.monotonic() - started:.0f} s, seed {seed}"

    def row(what: str, figure: object, goal: str = "", ok: bool = True) -> dict:
        return {"what": what, "figure": figure, "goal": goal, "anchor": took, "ratio": "", "ok": ok}

    return {"rows": [
        row("crash: kill -9 survived", c.kills, f"{kills}, nothing lost", c.kills == kills),
        row("crash: events checked byte-identical", f"{c.events_checked:,}", "all, ids 1..N"),
        row("crash: ledger rows checked", f"{c.ledger_rows_checked:,}", "balance after every kill"),
        row("crash: orphaned reservations reconciled", c.reservations_reconciled, "reserved -> unsettled"),
        row("crash: tasks / worktrees checked", f"{c.tasks_checked:,} / {c.worktrees_checked}", "none lost"),
    ]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    base = args.dir or Path(tempfile.mkdtemp(prefix="cockpit-crash-"))
    print(f"crash test: {args.kills} kills, seed {seed}, in {base}")
    started = time.monotonic()
    counts = run(args.kills, seed=seed, base=base)
    print(counts.line())
    print(f"crash test passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
