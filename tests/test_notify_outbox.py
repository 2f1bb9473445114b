"""Notifications, step 1: the outbox row lands with its event; the sender delivers at least once, marks a row
sent only after a 2xx, and a kill -9 between the receiver's answer and that mark loses nothing (it resends,
and the receiver drops the copy by key). Real SQLite file, real HTTP receiver on 127.0.0.1, real child process."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import httpx2 as httpx
import pytest

from cockpit.domain import Event, Kind, Refused
from cockpit.domain.notices import notices_for
from cockpit.factory.notify_sender import WebhookSender, outbox_rows, redact
from cockpit.store import Store
from notify_kit import Receiver


async def wait_for(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check.__name__}")
        await asyncio.sleep(0.05)


async def blocked_task(store: Store, reasons: list[str], product: str = "shop") -> Event:
    t = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product=product, data={"title": "x"}))
    await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product=product, task_id=t.task_id,
                             data={"agent": "builder-1"}))
    return await store.append(Event(kind=Kind.BLOCKED, actor="system", product=product, task_id=t.task_id,
                                    data={"reasons": reasons}))


def test_a_block_is_a_notice_with_the_commands_that_act_and_agent_text_is_made_visible():
    ev = Event(id=7, kind=Kind.BLOCKED, actor="system", product="shop", task_id="T2",
               data={"reasons": ["tests failed \x1b]0;pwn\x07 [b]x[/b]\nsecond line"]})
    (n,) = notices_for(ev)
    assert n.key == "blocked:T2:7" and n.product == "shop" and n.task_id == "T2"
    assert "\x1b" not in n.reason and "\x07" not in n.reason and "\n" not in n.reason
    assert 'cockpit send-back T2 -m "…"' in n.actions and 'cockpit approve T2 --note "…"' in n.actions
    assert "[shop T2] blocked: tests failed" in n.text()
    assert notices_for(ev.model_copy(update={"kind": Kind.TASK_STARTED})) == []


async def test_the_outbox_row_is_written_with_its_event_and_a_refused_block_writes_none(tmp_path):
    store = await Store.open(tmp_path / "c.db")
    try:
        b = await blocked_task(store, ["gate: tests failed"])
        rows = await outbox_rows(store)
        assert [(r["key"], r["state"]) for r in rows] == [(f"blocked:{b.task_id}:{b.id}", "pending")]
        # the same block again is refused by the domain (already blocked): recorded as a refusal, no notice
        again = Event(kind=Kind.BLOCKED, actor="system", product="shop", task_id=b.task_id, data={"reasons": ["x"]})
        with pytest.raises(Refused):
            await store.append(again)
        assert len(await outbox_rows(store)) == 1
    finally:
        await store.close()


async def test_sender_retries_with_backoff_marks_sent_only_after_2xx_and_never_records_the_token(tmp_path):
    rec = Receiver()
    store = await Store.open(tmp_path / "c.db")
    try:
        b = await blocked_task(store, ["gate: tests failed"])
        sender = WebhookSender(store, rec.url, backoff=0.05, timeout=5)
        rec.fail = 2
        async with httpx.AsyncClient() as client:
            assert await sender.deliver_due(client) == 0
            await store.flush()
            (row,) = await outbox_rows(store)
            assert row["state"] == "pending" and row["attempts"] == 1 and "HTTP 500" in row["error"]
            assert sender.failing
            await asyncio.sleep(0.06)
            assert await sender.deliver_due(client) == 0
            await asyncio.sleep(0.12)  # the second backoff is twice the first
            assert await sender.deliver_due(client) == 1
        await store.flush()
        (row,) = await outbox_rows(store)
        assert row["state"] == "sent" and row["attempts"] == 3 and not sender.failing
        assert rec.keys() == [f"blocked:{b.task_id}:{b.id}"] * 3
        assert 'cockpit send-back' in rec.got[-1]["text"]
        # an unreachable host: the error names the host, never the token in the URL's path
        dead = WebhookSender(store, "http://127.0.0.1:9/hook/s3cr3t-token?auth=zz", timeout=1)
        b2 = await blocked_task(store, ["again"])
        async with httpx.AsyncClient() as client:
            await dead.deliver_due(client)
        await store.flush()
        row2 = next(r for r in await outbox_rows(store) if r["key"].endswith(f":{b2.id}"))
        assert row2["state"] == "pending" and row2["error"] and "s3cr3t" not in row2["error"]
        assert "zz" not in redact("GET http://127.0.0.1:9/hook/s3cr3t-token?auth=zz failed", dead.url)
        db_text = (tmp_path / "c.db").read_bytes() + (tmp_path / "c.db-wal").read_bytes()
        assert b"s3cr3t" not in db_text
    finally:
        await store.close()
        rec.close()


CHILD = """
import asyncio, sys, time
from cockpit.store import Store
from cockpit.domain.notices import parse_quiet_hours
from cockpit.factory.notify_sender import WebhookSender
async def main():
    store = await Store.open(sys.argv[1])
    quiet = parse_quiet_hours(sys.argv[3]) if len(sys.argv) > 3 else None  # quiet hours, and a clock shifted by
    shift = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0               # this many seconds (past their end)
    await WebhookSender(store, sys.argv[2], backoff=0.05, poll=0.1, quiet=quiet,
                        clock=lambda: time.time() + shift).run()
asyncio.run(main())
"""


def quiet_span_around_now() -> str:
    """Quiet hours from 5 minutes ago to 10 minutes from now, local time (a clock 20 minutes on is past them)."""
    lt = time.localtime()
    m = lt.tm_hour * 60 + lt.tm_min
    a, b = (m - 5) % 1440, (m + 10) % 1440
    return f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"


async def test_kill_9_between_the_receivers_answer_and_the_mark_loses_nothing(tmp_path):
    rec = Receiver()
    db = tmp_path / "c.db"
    store = await Store.open(db)
    try:
        b = await blocked_task(store, ["needs a human"])
        key = f"blocked:{b.task_id}:{b.id}"
        rec.stall.clear()  # the receiver holds its answer: the child is mid-delivery when it dies
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(db), rec.url)

        async def received():
            return key in rec.keys()
        await wait_for(received)
        child.send_signal(signal.SIGKILL)
        await child.wait()
        rec.stall.set()
        (row,) = await outbox_rows(store)
        assert row["state"] == "pending"  # liveness: the kill landed before the mark

        child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(db), rec.url)
        try:
            async def sent():
                return [r["state"] for r in await outbox_rows(store)] == ["sent"]
            await wait_for(sent)
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        assert rec.keys() == [key, key]  # at least once: resent after the restart
        assert set(rec.keys()) == {key}  # and the receiver dedups by key to exactly once
    finally:
        await store.close()
        rec.close()


async def test_the_batching_window_turns_n_blocks_into_one_message_and_a_repeat_reason_into_one_line(tmp_path):
    """Liveness first: without a window the same five blocks arrive as five messages; with one, as one."""
    async def five_blocks(store: Store) -> list[str]:
        keys = []
        for i in range(4):
            b = await blocked_task(store, [f"reason {i}"])
            keys.append(f"blocked:{b.task_id}:{b.id}")
        # the first task blocks again for the same reason, within the window
        t = b.task_id
        await store.append(Event(kind=Kind.RETRY, actor="human:you", product="shop", task_id=t))
        again = await store.append(Event(kind=Kind.BLOCKED, actor="system", product="shop", task_id=t,
                                         data={"reasons": ["reason 3"]}))
        return [*keys, f"blocked:{t}:{again.id}"]

    for window, messages in ((0.0, 5), (0.3, 1)):
        rec = Receiver()
        store = await Store.open(tmp_path / f"w{window}.db")
        try:
            keys = await five_blocks(store)
            sender = WebhookSender(store, rec.url, window=window)
            async with httpx.AsyncClient() as client:
                async def all_sent(sender=sender, client=client, store=store):
                    await sender.deliver_due(client)
                    await store.flush()
                    return all(r["state"] == "sent" for r in await outbox_rows(store))
                await wait_for(all_sent)
            assert len(rec.got) == messages and rec.keys() == keys  # every key, once
            if window:
                (msg,) = rec.got
                assert msg["text"].startswith("4 things need you") and msg["text"].count("reason 3") == 1
        finally:
            await store.close()
            rec.close()


async def test_doctor_checks_the_webhook_and_never_shows_its_token(tmp_path, monkeypatch):
    from cockpit.config import load_factory
    from cockpit.cli.doctor import check_notify

    (tmp_path / "factory.toml").write_text('[notify]\nwebhook_url_env = "HOOK_FOR_TEST"\n')
    config = load_factory(tmp_path / "factory.toml")
    monkeypatch.delenv("HOOK_FOR_TEST", raising=False)
    (c,) = await check_notify(config, live=True)
    assert c.status == "fail" and "HOOK_FOR_TEST" in c.detail and "factory.toml" in c.detail
    rec = Receiver()
    try:
        monkeypatch.setenv("HOOK_FOR_TEST", rec.url)
        (c,) = await check_notify(config, live=True)
        assert c.status == "ok" and rec.keys() == ["doctor"] and "s3cr3t" not in c.detail
        rec.fail = 1
        (c,) = await check_notify(config, live=True)
        assert c.status == "fail" and "HTTP 500" in c.detail and "s3cr3t" not in c.detail
    finally:
        rec.close()


def test_cockpit_notify_test_reaches_the_webhook_and_fails_loudly_when_it_does_not(tmp_path, monkeypatch, capsys):
    from cockpit.cli import main

    (tmp_path / "factory.toml").write_text('[notify]\nwebhook_url_env = "HOOK_FOR_TEST"\n')
    rec = Receiver()
    try:
        monkeypatch.setenv("HOOK_FOR_TEST", rec.url)
        assert main(["notify", "test", "-f", str(tmp_path / "factory.toml")]) == 0
        assert rec.keys()[0].startswith("test:") and "accepted" in capsys.readouterr().out
        rec.fail = 1
        assert main(["notify", "test", "-f", str(tmp_path / "factory.toml")]) == 1
        out = capsys.readouterr().out
        assert "HTTP 500" in out and "s3cr3t" not in out
    finally:
        rec.close()


async def test_random_blocks_and_kill_9s_against_a_flaky_receiver_deliver_every_notice_and_nothing_else(tmp_path):
    """Random block/retry sequences, the sender (a real child process) killed with SIGKILL at random moments,
    a receiver failing 30% of requests and stalling some: after a clean run every block's key has arrived,
    and no key that is not a block's."""
    import random
    for seed, quiet in ((1, None), (2, None), (3, quiet_span_around_now())):
        args = [quiet, "0"] if quiet else []  # in quiet hours while the blocks come, then 20 minutes later
        rnd = random.Random(seed)
        rec = Receiver()
        rec.flaky = random.Random(seed)
        rec.fail = 1 if quiet else 0  # the digest is one message: make sure one answer fails
        db = tmp_path / f"p{seed}.db"
        store = await Store.open(db)
        try:
            expected: set[str] = set()
            blocked: list[str] = []
            child, kills = None, 0
            for _ in range(rnd.randint(8, 14)):
                if blocked and rnd.random() < 0.4:  # a human retries a blocked task; it may block again later
                    tid = blocked.pop(rnd.randrange(len(blocked)))
                    await store.append(Event(kind=Kind.RETRY, actor="human:you", product="shop", task_id=tid))
                    b = await store.append(Event(kind=Kind.BLOCKED, actor="system", product="shop", task_id=tid,
                                                 data={"reasons": [rnd.choice(["tests", "review", "budget"])]}))
                else:
                    b = await blocked_task(store, [rnd.choice(["tests", "review", "budget"])])
                    await store.append(Event(kind=Kind.NOTE, actor="system", product="shop", task_id=b.task_id,
                                             data={"text": "not a notice"}))
                expected.add(f"blocked:{b.task_id}:{b.id}")
                blocked.append(b.task_id)
                if child is None:
                    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(db), rec.url, *args)
                elif rnd.random() < 0.3:
                    await asyncio.sleep(rnd.uniform(0.0, 0.4))
                    child.send_signal(signal.SIGKILL)
                    await child.wait()
                    child = None
                    kills += 1
            if quiet:
                await asyncio.sleep(0.5)  # a sender that ignored the quiet hours would have sent by now
                assert rec.got == []  # quiet hours honoured: nothing while they last, killed or not
                if child is not None:
                    child.send_signal(signal.SIGKILL)
                    await child.wait()
                child, args = None, [quiet, str(20 * 60)]
            if child is None:
                child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(db), rec.url, *args)
            try:
                async def all_sent(store=store):
                    return all(r["state"] == "sent" for r in await outbox_rows(store))
                await wait_for(all_sent, timeout=90)
            finally:
                child.send_signal(signal.SIGKILL)
                await child.wait()
            assert kills and rec.failed  # liveness: the sender was killed and the receiver did fail requests
            assert set(rec.keys()) == expected  # every needs-you transition, and nothing else
            if quiet:  # after the quiet hours: digests only (one, or its resends after a 500 or a kill)
                assert all(g.get("digest") for g in rec.got)
            assert {r["key"] for r in await outbox_rows(store)} == expected
        finally:
            await store.close()
            rec.close()


async def test_a_block_long_resolved_before_delivery_is_not_sent_a_fresh_one_is(tmp_path):
    """Turning notifications on (or the demo's seeded history) must not page the human for last month's blocks,
    already resolved; a block resolved within the hour is still news and is sent."""
    rec = Receiver()
    store = await Store.open(tmp_path / "c.db")
    try:
        old_ts = time.time() - 2 * 86400

        async def block_then_retry(ts: float | None) -> str:
            extra = {} if ts is None else {"ts": ts}
            t = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="shop",
                                         data={"title": "x"}, **extra))
            await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="shop", task_id=t.task_id,
                                     data={"agent": "builder-1"}, **extra))
            b = await store.append(Event(kind=Kind.BLOCKED, actor="system", product="shop", task_id=t.task_id,
                                         data={"reasons": ["tests"]}, **extra))
            await store.append(Event(kind=Kind.RETRY, actor="human:you", product="shop", task_id=t.task_id,
                                     data={"note": "go on"}))
            assert store.task(t.task_id).state.value != "blocked"
            return f"blocked:{t.task_id}:{b.id}"

        old_key, fresh_key = await block_then_retry(old_ts), await block_then_retry(None)
        async with httpx.AsyncClient() as client:
            # liveness: with no staleness rule the old block goes out like any other
            careless = WebhookSender(store, rec.url, stale_after_s=float("inf"))
            rows_before = {r["key"]: r["state"] for r in await outbox_rows(store)}
            assert rows_before == {old_key: "pending", fresh_key: "pending"}
            sender = WebhookSender(store, rec.url)
            assert await sender.deliver_due(client) == 1
            assert rec.keys() == [fresh_key]
            states = {r["key"]: r["state"] for r in await outbox_rows(store)}
            assert states == {old_key: "stale", fresh_key: "sent"}
            await store.submit(None, [("UPDATE outbox SET state = 'pending' WHERE state = 'stale'", ())])
            assert await careless.deliver_due(client) == 1
            assert rec.keys() == [fresh_key, old_key]
    finally:
        rec.close()
        await store.close()
