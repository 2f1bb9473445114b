"""Per-product routing: a product's notices go only to the channels routed to it; a product not routed, and a
factory-level notice, go to every channel; mute still holds. Two real receivers on 127.0.0.1: the JSON webhook
and apprise's json:// service. Config errors name the file and line."""

from __future__ import annotations

import re

import httpx2 as httpx
import pytest

from cockpit.config import ConfigError, load_factory
from cockpit.domain import Event, Kind
from cockpit.factory.notify_apprise import AppriseChannel
from cockpit.factory.notify_sender import WebhookSender, notifier_for
from cockpit.store import Store
from notify_kit import Receiver
from test_notify_outbox import blocked_task


def task_ids(rec: Receiver) -> list[str]:
    """The tasks named in what a receiver got (webhook JSON, or apprise's message text)."""
    out = []
    for g in rec.got:
        out += [n["task_id"] for n in g.get("notices", [g])] if "message" not in g else \
            re.findall(r"\[\w+ (T\d+)\]", g["message"])
    return [t for t in out if t]


@pytest.fixture
async def two():
    hook, push = Receiver(), Receiver()
    yield hook, push
    hook.close()
    push.close()


async def deliver(s: WebhookSender) -> int:
    async with httpx.AsyncClient() as client:
        return await s.deliver_due(client)


def sender(store, hook, push, **kw) -> WebhookSender:
    return WebhookSender(store, hook.url, channels=[AppriseChannel([push.url.replace("http://", "json://")])], **kw)


async def test_a_products_notices_go_only_to_its_routed_channels(tmp_path, two):
    hook, push = two
    store = await Store.open(tmp_path / "c.db")
    try:
        shop, blog, misc = [(await blocked_task(store, ["tests"], product=p)).task_id for p in ("shop", "blog", "misc")]
        # liveness: without routes, every channel gets every notice
        assert await deliver(sender(store, hook, push)) == 3
        assert sorted(task_ids(hook)) == sorted(task_ids(push)) == sorted([shop, blog, misc])
        hook.got.clear()
        push.got.clear()

        shop2, blog2, misc2 = [(await blocked_task(store, ["lint"], product=p)).task_id
                               for p in ("shop", "blog", "misc")]
        await store.append(Event(kind=Kind.MODEL_UNAVAILABLE, actor="builder-1", data={"error": "refused"}))
        routed = sender(store, hook, push, routes={"shop": ["webhook"], "blog": ["apprise"]})
        assert await deliver(routed) == 4
        assert sorted(task_ids(hook)) == sorted([shop2, misc2]) and sorted(task_ids(push)) == sorted([blog2, misc2])
        # the factory-level notice (the model unreachable) goes everywhere
        assert any(g.get("kind") == "model unreachable" for g in hook.got)
        assert any("model unreachable" in g["message"] for g in push.got)
    finally:
        await store.close()


async def test_a_batch_goes_to_each_channel_with_its_rows_and_mute_still_holds(tmp_path, two):
    hook, push = two
    store = await Store.open(tmp_path / "c.db")
    try:
        shop, blog = [(await blocked_task(store, ["tests"], product=p)).task_id for p in ("shop", "blog")]
        muted = (await blocked_task(store, ["tests"], product="quiet")).task_id
        s = sender(store, hook, push, window=0.01, routes={"shop": ["webhook"], "blog": ["apprise"]}, mute=["quiet"])
        while await store.query("SELECT 1 FROM outbox WHERE state = 'pending' AND product != 'quiet'"):
            await deliver(s)  # nothing until the window of 10 ms has passed, then one message per channel
        assert task_ids(hook) == [shop] and task_ids(push) == [blog] and len(hook.got) == len(push.got) == 1
        assert [r[0] for r in await store.query("SELECT state FROM outbox WHERE product = 'quiet'")] == ["pending"]
        assert muted not in task_ids(hook) + task_ids(push)
    finally:
        await store.close()


def factory(tmp_path, notify: str) -> str:
    (tmp_path / "factory.toml").write_text(
        '[factory]\nname = "t"\n\n[[products]]\nname = "shop"\npath = "shop"\ntest_command = "true"\n\n'
        f'[notify]\nwebhook_url_env = "HOOK"\nterminal = true\n\n{notify}')
    return str(tmp_path / "factory.toml")


def test_routes_load_and_bad_ones_name_the_file_line_product_and_channel(tmp_path):
    cfg = load_factory(factory(tmp_path, '[notify.routes]\nshop = ["terminal"]\n'))
    assert notifier_for(cfg, None, "http://127.0.0.1:9/x").routed("shop") == ["terminal"]
    assert notifier_for(cfg, None, "http://127.0.0.1:9/x").routed(None) == ["webhook", "terminal"]
    path = factory(tmp_path, '[notify.routes]\nshop = ["terminal"]\nshp = ["webhook"]\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}:15: key 'notify.routes.shp': no product 'shp'.*shop"):
        load_factory(path)
    path = factory(tmp_path, '[notify.routes]\nshop = ["slack"]\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}:14: .*no channel 'slack' is configured.*"
                                          "configured: webhook, terminal"):
        load_factory(path)
    with pytest.raises(ConfigError, match="no channel 'desktop'"):  # a real channel, but not turned on
        load_factory(factory(tmp_path, '[notify.routes]\nshop = ["desktop"]\n'))


async def test_the_rate_limit_is_per_channel_a_busy_product_never_holds_up_another_channel(tmp_path, two):
    """shop -> webhook, blog -> apprise, two messages a minute: shop's third block waits for the webhook's minute
    while blog's two reach apprise. A limit counted across the channels (what it was) would have held blog's too:
    four messages went out within the minute, twice the limit."""
    hook, push = two
    store = await Store.open(tmp_path / "c.db")
    now = [1_000_000.0]
    try:
        s = sender(store, hook, push, per_minute=2, routes={"shop": ["webhook"], "blog": ["apprise"]},
                   clock=lambda: now[0])
        shop, blog = [], []
        for _ in range(3):  # one at a time: the webhook takes two, then its limit holds the third
            shop.append((await blocked_task(store, ["tests"], product="shop")).task_id)
            await deliver(s)
        for _ in range(2):
            blog.append((await blocked_task(store, ["tests"], product="blog")).task_id)
            await deliver(s)
        assert task_ids(hook) == shop[:2] and task_ids(push) == blog  # blog's channel was not held up
        assert len(hook.got) + len(push.got) == 4  # more than 2 a minute in all: the limit is each channel's
        (held,) = await store.query("SELECT key, attempts FROM outbox WHERE state = 'pending'")
        assert held[0].startswith(f"blocked:{shop[2]}:") and held[1] == 0  # waiting, no failed try counted
        now[0] += 61  # the webhook's minute has passed
        await deliver(s)
        assert task_ids(hook) == shop and await store.query("SELECT 1 FROM outbox WHERE state = 'pending'") == []
    finally:
        await store.close()
