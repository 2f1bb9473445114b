"""Opt-in landings and the daily digest: off by default; on, a merge is a notice, and one digest a day
(merged, blocked, spend) goes once its hour has passed, once per date across restarts.
Real SQLite files, the real sender, a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import time

import httpx2 as httpx
import pytest

from cockpit.config import ConfigError, load_factory
from cockpit.domain import Event, Kind
from cockpit.factory.notify_sender import WebhookSender, notifier_for
from cockpit.store import Store
from notify_kit import Receiver
from test_notify_outbox import blocked_task

FLOW = [(Kind.TASK_STARTED, "system", {"agent": "builder-1"}), (Kind.COMMITTED, "builder-1", {"sha": "c1"}),
        (Kind.SUBMITTED, "builder-1", {"commit": "c1"}), (Kind.BLOCKED, "system", {"reasons": ["review"]}),
        (Kind.OVERRIDE, "human:you", {"note": "checked by hand"}),
        (Kind.VERDICT, "system", {"gate": "merge", "commit": "m1aaaaaaaaaaaaaa", "source": "c1", "base": "b0",
                                  "outcome": "pass"}),
        (Kind.MERGED, "system", {"merged_commit": "m1aaaaaaaaaaaaaa"})]


async def merged_task(store: Store, product: str = "shop", ts: float | None = None) -> str:
    """A task taken to merged through the domain (an override after a block, a green merge verdict)."""
    tid = (await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product=product,
                                    data={"title": "x"}, **({"ts": ts} if ts else {})))).task_id
    for kind, actor, data in FLOW:
        await store.append(Event(kind=kind, actor=actor, product=product, task_id=tid, data=data,
                                 **({"ts": ts} if ts else {})))
    return tid


async def keys(store: Store, like: str) -> list[str]:
    return [r[0] for r in await store.query("SELECT key FROM outbox WHERE key LIKE ? ORDER BY id", (like,))]


async def test_landings_are_off_by_default_and_on_a_merge_is_one_notice_that_arrives(tmp_path):
    store = await Store.open(tmp_path / "c.db")
    rec = Receiver()
    try:
        off = await merged_task(store)
        assert await keys(store, "landed:%") == []  # off: a merge needs nobody
        store.notify_landings = True
        on = await merged_task(store)
        (key,) = await keys(store, "landed:%")
        assert key.startswith(f"landed:{on}:") and off != on
        async with httpx.AsyncClient() as client:
            await WebhookSender(store, rec.url).deliver_due(client)
        landed = [g for g in rec.got if g.get("kind") == "landed"]
        assert [g["key"] for g in landed] == [key]
        assert f"[shop {on}] landed: merged as m1aaaaaaaaaa" in landed[0]["text"]
    finally:
        rec.close()
        await store.close()


def at(day_offset: int, hh: int, mm: int) -> float:
    """Local time `hh:mm`, `day_offset` days from today."""
    lt = time.localtime(time.time() + 86400 * day_offset)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, hh, mm, 0, 0, 0, -1))


async def test_the_digest_goes_once_a_day_after_its_hour_even_across_a_restart(tmp_path):
    path = tmp_path / "c.db"
    store = await Store.open(path)
    rec = Receiver()
    try:
        await merged_task(store, ts=at(0, 9, 0))
        await blocked_task(store, ["tests failed"])
        await store.reserve(call_id="c1", task_id=None, product="shop", actor="builder-1", model="m", usd=1.0)
        await store.settle(call_id="c1", task_id=None, product="shop", usd=0.25, usage={})
        clock = [at(0, 17, 59)]
        sender = WebhookSender(store, rec.url, digest_at=18 * 60, clock=lambda: clock[0])
        async with httpx.AsyncClient() as client:
            await sender.deliver_due(client)
            assert await keys(store, "digest:%") == []  # before its hour: none
            clock[0] = at(0, 18, 30)
            await sender.deliver_due(client)
            await sender.deliver_due(client)
        today = time.strftime("%Y-%m-%d", time.localtime(clock[0]))
        assert await keys(store, "digest:%") == [f"digest:{today}"]
        (digest,) = [g for g in rec.got if g.get("kind") == "digest"]
        assert f"{today}: 1 merged" in digest["text"] and "2 blocked" in digest["text"]
        assert "1 still blocked" in digest["text"] and "spent $0.25" in digest["text"]

        # a restart the same evening: a new store and sender, the digest is not sent again
        await store.close()
        store = await Store.open(path)
        async with httpx.AsyncClient() as client:
            await WebhookSender(store, rec.url, digest_at=18 * 60, clock=lambda: clock[0]).deliver_due(client)
            assert len([g for g in rec.got if g.get("kind") == "digest"]) == 1
            assert len(await store.events(kinds=[Kind.DIGEST])) == 1
            # the next day after its hour: the next digest (liveness of the per-date key)
            clock[0] = at(1, 18, 1)
            await WebhookSender(store, rec.url, digest_at=18 * 60, clock=lambda: clock[0]).deliver_due(client)
        assert len(await keys(store, "digest:%")) == 2
        assert len([g for g in rec.got if g.get("kind") == "digest"]) == 2
    finally:
        rec.close()
        await store.close()


def test_config_landings_and_digest_parse_and_a_bad_hour_names_file_and_line(tmp_path):
    f = tmp_path / "factory.toml"
    f.write_text('[factory]\nname = "t"\n\n[notify]\nterminal = true\nlandings = true\ndigest = "18:00"\n')
    cfg = load_factory(f)
    assert cfg.notify.landings and notifier_for(cfg, None, None).digest_at == 18 * 60
    assert not load_factory(f.write_text('[factory]\nname = "t"\n') and f).notify.landings  # off by default
    f.write_text('[factory]\nname = "t"\n\n[notify]\nterminal = true\ndigest = "25:00"\n')
    with pytest.raises(ConfigError, match=rf"{f}:6.*HH:MM|{f}:6.*hours 00-23"):
        load_factory(f)
