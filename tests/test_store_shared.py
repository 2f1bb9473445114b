"""One store file, more than one writer: the running cockpit and a `cockpit task add` (or `approve`, or `budget
raise`) typed in another terminal. Each writer catches up with what the other committed before it writes, so
ids never collide, nothing of either is lost, the projection and the budgets stay whole, and the cockpit's
subscribers (the screen, the orchestrator) see what the other process did."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from cockpit.domain import Event, Kind, TaskState, fold
from cockpit.domain.budget import BudgetLimits, Scope
from cockpit.store import Store
from factory_kit import write_plain_factory

REPO = Path(__file__).resolve().parents[1]


def created(title: str) -> Event:
    return Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop", data={"title": title})


async def test_two_writers_on_one_file_interleave_without_losing_or_colliding(tmp_path):
    db = tmp_path / "memory" / "cockpit.db"
    a = await Store.open(db)
    b = await Store.open(db)
    try:
        sub = a.subscribe()
        t1 = await a.append(created("first, by a"))
        a.post(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": "a talks\n"}))
        await a.flush()
        t2 = await b.append(created("second, by b"))  # b has not seen a's events: it must catch up, not collide
        assert (t1.task_id, t2.task_id) == ("T1", "T2") and t2.id == 3
        # a has not seen b's: its next writes catch up too, posted output included
        a.post(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": "a talks again\n"}))
        t3 = await a.append(created("third, by a"))
        assert t3.task_id == "T3" and t3.id == 5
        started = await a.append(Event(kind=Kind.TASK_STARTED, actor="system", product="shop", task_id="T2",
                                       data={"agent": "builder-2"}))  # a task a only knows from b's write
        assert a.task("T2").state == TaskState.BUILDING and started.id == 6
        seen = [(await asyncio.wait_for(sub.get(), 5)).id for _ in range(6)]
        assert seen == [1, 2, 3, 4, 5, 6]  # b's event reached a's subscribers, in log order
        await b.flush()
        assert b.task("T3") is not None and b.task("T2").state == TaskState.BUILDING
        events = await a.events()
        assert [e.id for e in events] == [1, 2, 3, 4, 5, 6]
        assert fold(events) == {t.id: t for t in a.tasks()} == {t.id: t for t in b.tasks()}
        sub.close()
    finally:
        await b.close()
        await a.close()


async def test_a_quiet_cockpit_sees_another_process_add_a_task(tmp_path):
    """Nothing written by the cockpit meanwhile: it still notices, within a poll, and tells its subscribers."""
    db = tmp_path / "memory" / "cockpit.db"
    a = await Store.open(db)
    try:
        sub = a.subscribe()
        b = await Store.open(db)
        await b.append(created("added from another terminal"))
        await b.close()
        got = await asyncio.wait_for(sub.get(), 10)
        assert got.kind == Kind.TASK_CREATED and got.task_id == "T1"
        assert a.task("T1") is not None and a.task("T1").title == "added from another terminal"
        sub.close()
    finally:
        await a.close()


async def test_a_budget_raised_elsewhere_counts_in_the_running_cockpit(tmp_path):
    db = tmp_path / "memory" / "cockpit.db"
    limits = BudgetLimits(product_usd={"shop": 1.0})
    a = await Store.open(db, budgets=limits)
    b = await Store.open(db, budgets=limits)
    try:
        await b.append(Event(kind=Kind.BUDGET_RAISED, actor="human:you", product="shop",
                             data={"scope": "product", "key": "shop", "usd": 2.0}))
        await a.flush()  # catches up
        assert a.budget.limit((Scope.PRODUCT, "shop")) == b.budget.limit((Scope.PRODUCT, "shop"))
        await a.reserve(call_id="c1", task_id=None, product="shop", actor="builder-1", model="m", usd=2.5)
        await b.flush()
        assert b.budget.total((Scope.PRODUCT, "shop")).held > 0  # b sees a's reservation before its next check
    finally:
        await b.close()
        await a.close()


async def test_cockpit_task_add_from_a_shell_while_the_cockpit_writes(tmp_path):
    """The real CLI, in its own process, while this process keeps posting agent output."""
    root = tmp_path / "f"
    (root / "memory").mkdir(parents=True)
    (root / "shop").mkdir()
    write_plain_factory(root)
    a = await Store.open(root / "memory" / "cockpit.db")
    try:
        sub = a.subscribe()
        stop = asyncio.Event()

        async def talk() -> int:
            n = 0
            while not stop.is_set():
                n += 1
                a.post(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": f"line {n}\n"}))
                await asyncio.sleep(0.002)
            return n

        talker = asyncio.create_task(talk())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cockpit", "task", "add", "shop", "Export orders", "--factory",
            str(root / "factory.toml"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        task_id = out.decode().strip()
        await asyncio.sleep(0.3)
        stop.set()
        posted = await talker
        await a.flush()
        assert a.task(task_id) is not None and a.task(task_id).title == "Export orders"
        kinds = [e.kind for e in sub.drain()]
        assert Kind.TASK_CREATED in kinds
        texts = await a.events(kinds=[Kind.AGENT_TEXT])
        assert len(texts) == posted  # not one posted line lost to the other writer
        ids = [e.id for e in await a.events()]
        assert ids == list(range(1, len(ids) + 1))
        sub.close()
    finally:
        await a.close()


def test_budget_reconcile_refuses_while_a_cockpit_runs_the_factory(tmp_path):
    """Reconcile closes reservations: with a cockpit running, one of them may be a call still streaming."""
    root = tmp_path / "f"
    (root / "shop").mkdir(parents=True)
    (root / "memory").mkdir()
    write_plain_factory(root)
    holder = subprocess.Popen(  # the running cockpit's lock, held by another process
        [sys.executable, "-c", "import sys, time; from cockpit.factory.recovery import acquire_run_lock; "
         "acquire_run_lock(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(root / "memory" / "cockpit.db")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = subprocess.run([sys.executable, "-m", "cockpit", "budget", "reconcile", "--factory",
                              str(root / "factory.toml")], cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 2, run
        assert "another cockpit" in run.stderr and "with the cockpit stopped" in run.stderr
    finally:
        holder.kill()
        holder.wait()
    run = subprocess.run([sys.executable, "-m", "cockpit", "budget", "reconcile", "--factory",
                          str(root / "factory.toml")], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0 and "reconciled 0 call(s)" in run.stdout, run
