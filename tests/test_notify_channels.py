"""Notifications, channels and quiet hours: the terminal channel (BEL + OSC 9 / OSC 777, tmux passthrough)
written to a real pty, agent text that cannot break out of the sequence, and quiet hours that hold every
notice and then send one digest. Real SQLite file, real pty, real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time

import httpx2 as httpx
import pytest

from cockpit.config import ConfigError, load_factory
from cockpit.domain.notices import in_quiet_hours, parse_quiet_hours
from cockpit.factory.notify_sender import WebhookSender, outbox_rows
from cockpit.factory.notify_terminal import TerminalChannel, terminal_notice
from cockpit.store import Store
from notify_kit import Receiver
from test_notify_outbox import blocked_task, wait_for

EVIL = "tests failed \x07\x1b]777;notify;pwned;owned\x07\x1b]0;title\x07; rm -rf"


def test_agent_text_cannot_end_the_osc_or_start_another_one():
    # the attack, against a sequence built without the defence: the reason's own OSC 777 lands
    naive = f"\x07\x1b]9;cockpit: {EVIL}\x07"
    assert naive.count("\x1b]") == 3 and "777;notify;pwned" in naive
    seq = terminal_notice("cockpit · shop", EVIL)
    assert seq.startswith("\x07")  # the bell
    assert seq.count("\x1b]") == 2 and seq.count("\x07") == 3  # exactly our OSC 9 and OSC 777, BEL-ended
    assert "\x1b]9;cockpit · shop: tests failed" in seq and "\x1b]777;notify;cockpit · shop;tests failed" in seq
    assert seq.split("\x1b]777;notify;")[1].count(";") == 1  # the agent's ';' cannot add a field


def test_inside_tmux_each_osc_goes_through_passthrough_with_its_escapes_doubled():
    seq = terminal_notice("cockpit", "T2 blocked", tmux=True)
    parts = seq[1:].split("\x1b\\")[:-1]
    assert len(parts) == 2 and all(p.startswith("\x1bPtmux;\x1b\x1b]") for p in parts)
    assert "\x1bPtmux;\x1b\x1b]9;cockpit: T2 blocked\x07" in seq


async def test_a_block_rings_a_real_terminal_through_the_outbox(tmp_path):
    master, slave = os.openpty()
    os.set_blocking(master, False)
    store = await Store.open(tmp_path / "c.db")
    try:
        b = await blocked_task(store, ["gate: tests failed"])
        sender = WebhookSender(store, None, channels=[TerminalChannel(os.ttyname(slave), tmux=False)])
        seen = b""

        async def rung():
            nonlocal seen
            await sender.deliver_due(None)
            try:
                seen += os.read(master, 4096)
            except BlockingIOError:
                pass
            return b"\x1b]777;notify;" in seen
        await wait_for(rung)
        assert seen.startswith(b"\x07") and f"[shop {b.task_id}] blocked: gate: tests failed".encode() in seen
        await store.flush()
        assert [r["state"] for r in await outbox_rows(store)] == ["sent"]
    finally:
        await store.close()
        os.close(master)
        os.close(slave)


async def test_a_terminal_that_is_gone_keeps_the_notice_pending_and_marks_the_channel_failing(tmp_path):
    store = await Store.open(tmp_path / "c.db")
    try:
        await blocked_task(store, ["x"])
        sender = WebhookSender(store, None, channels=[TerminalChannel(str(tmp_path / "no-tty"))], backoff=0.01)
        assert await sender.deliver_due(None) == 0 and sender.failing
        await store.flush()
        (row,) = await outbox_rows(store)
        assert row["state"] == "pending" and "no-tty" in row["error"]
    finally:
        await store.close()


def _span_around_now(before: int, after: int) -> tuple[int, int]:
    lt = time.localtime()
    m = lt.tm_hour * 60 + lt.tm_min
    return (m - before) % 1440, (m + after) % 1440


async def test_quiet_hours_hold_every_notice_then_send_one_digest(tmp_path):
    """Liveness first: without quiet hours the blocks arrive at once; within them nothing arrives, however
    often the sender looks; after the end, one digest carrying every key."""
    span = _span_around_now(5, 10)
    for quiet in (None, span):
        rec = Receiver()
        store = await Store.open(tmp_path / f"q{bool(quiet)}.db")
        now = [time.time()]
        try:
            keys = []
            for i in range(3):
                b = await blocked_task(store, [f"reason {i}"])
                keys.append(f"blocked:{b.task_id}:{b.id}")
            sender = WebhookSender(store, rec.url, quiet=quiet, clock=lambda now=now: now[0])
            async with httpx.AsyncClient() as client:
                for _ in range(5):
                    await sender.deliver_due(client)
                if quiet is None:
                    assert rec.keys() == keys and len(rec.got) == 3
                    continue
                assert rec.got == []  # held
                now[0] += 20 * 60  # the quiet hours are over
                assert not sender.is_quiet(now[0])
                assert await sender.deliver_due(client) == 3
            (msg,) = rec.got
            assert msg["digest"] and msg["keys"] == keys
            assert msg["text"].startswith("while you were away (quiet hours): 3 things need you")
            assert all(f"reason {i}" in msg["text"] for i in range(3))
        finally:
            await store.close()
            rec.close()


def test_quiet_hours_parse_cross_midnight_and_a_bad_value_names_the_file(tmp_path):
    assert parse_quiet_hours("22:00-07:00") == (1320, 420)
    t = time.mktime((2026, 1, 5, 23, 30, 0, 0, 0, -1))
    assert in_quiet_hours(t, (1320, 420)) and in_quiet_hours(t + 7 * 3600, (1320, 420))  # 06:30
    assert not in_quiet_hours(t + 8 * 3600, (1320, 420))  # 07:30
    for bad in ("22-07", "25:00-07:00", "07:00-07:00"):
        with pytest.raises(ValueError, match="quiet_hours"):
            parse_quiet_hours(bad)
    f = tmp_path / "factory.toml"
    f.write_text('[notify]\nterminal = true\nquiet_hours = "late-early"\n')
    with pytest.raises(ConfigError, match=r"factory.toml.*quiet_hours|quiet_hours.*HH:MM") as e:
        load_factory(f)
    assert "HH:MM-HH:MM" in str(e.value)


async def test_a_block_reaches_a_push_service_through_apprise_and_its_token_stays_out(tmp_path, monkeypatch, caplog):
    """apprise's json:// service posting to a real receiver on 127.0.0.1 stands in for Slack/ntfy/...: the
    same library path, no network. A refusal keeps the row pending; the URL's token is in no error or log."""
    from cockpit.factory.notify_apprise import AppriseChannel

    rec = Receiver()
    url = rec.url.replace("http://", "json://")
    store = await Store.open(tmp_path / "c.db")
    try:
        b = await blocked_task(store, ["gate: tests failed"])
        sender = WebhookSender(store, None, channels=[AppriseChannel([url])], backoff=0.01)
        rec.fail = 1
        assert await sender.deliver_due(None) == 0 and sender.failing
        await store.flush()
        (row,) = await outbox_rows(store)
        assert row["state"] == "pending" and "apprise (JSON)" in row["error"] and "s3cr3t" not in row["error"]

        async def sent():
            await sender.deliver_due(None)
            await store.flush()
            return [r["state"] for r in await outbox_rows(store)] == ["sent"]
        await wait_for(sent)
        msg = rec.got[-1]
        assert f"[shop {b.task_id}] blocked: gate: tests failed" in msg["message"]
        assert f'cockpit send-back {b.task_id} -m "…"' in msg["message"]
        assert "s3cr3t" not in caplog.text
    finally:
        await store.close()
        rec.close()


def test_apprise_urls_come_from_the_environment_and_a_bad_one_names_the_file_not_the_url(tmp_path, monkeypatch):
    from cockpit.factory.notify_apprise import apprise_urls

    f = tmp_path / "factory.toml"
    f.write_text('[notify]\napprise_urls_env = "COCKPIT_TEST_APPRISE"\n')
    cfg = load_factory(f)
    monkeypatch.delenv("COCKPIT_TEST_APPRISE", raising=False)
    with pytest.raises(ConfigError, match=r"factory.toml: \[notify\] apprise_urls_env names \$COCKPIT_TEST_APPRISE"):
        apprise_urls(cfg)
    monkeypatch.setenv("COCKPIT_TEST_APPRISE", "ntfys://my-topic nosuch://s3cr3t-token")
    with pytest.raises(ConfigError, match="URL number 2") as e:
        apprise_urls(cfg)
    assert "s3cr3t" not in str(e.value)
    monkeypatch.setenv("COCKPIT_TEST_APPRISE", "ntfys://my-topic")
    assert apprise_urls(cfg) == ["ntfys://my-topic"]


async def test_doctor_checks_each_channel_by_name_and_never_shows_a_secret(tmp_path, monkeypatch):
    from cockpit.cli.doctor import check_notify

    rec = Receiver()
    f = tmp_path / "factory.toml"
    f.write_text('[notify]\nwebhook_url_env = "HOOK_FOR_TEST"\nterminal = true\n')
    monkeypatch.setenv("HOOK_FOR_TEST", rec.url)
    try:
        config = load_factory(f)
        checks = await check_notify(config, live=False)
        assert [c.name for c in checks] == ["notify webhook", "notify terminal"]
        assert all("s3cr3t" not in c.detail for c in checks) and rec.got == []
        rec.fail = 1
        web = (await check_notify(config.model_copy(update={"notify": config.notify.model_copy(
            update={"terminal": False})}), live=True))[0]
        assert web.status == "fail" and "HTTP 500" in web.detail and "s3cr3t" not in web.detail
    finally:
        rec.close()


def test_notify_test_sends_on_the_named_channel_only(tmp_path, monkeypatch, capsys):
    from cockpit.cli import main

    hook, push = Receiver(), Receiver()
    f = tmp_path / "factory.toml"
    f.write_text('[notify]\nwebhook_url_env = "HOOK_FOR_TEST"\napprise_urls_env = "PUSH_FOR_TEST"\n')
    monkeypatch.setenv("HOOK_FOR_TEST", hook.url)
    monkeypatch.setenv("PUSH_FOR_TEST", push.url.replace("http://", "json://"))
    try:
        assert main(["notify", "test", "-f", str(f)]) == 0  # liveness: without --channel, both get it
        assert len(hook.got) == 1 and len(push.got) == 1
        assert main(["notify", "test", "--channel", "webhook", "-f", str(f)]) == 0
        assert "webhook: accepted" in capsys.readouterr().out
        assert len(hook.got) == 2 and len(push.got) == 1  # only the named channel
        push.fail = 1
        assert main(["notify", "test", "--channel", "apprise", "-f", str(f)]) == 1
        out = capsys.readouterr().out
        assert "apprise (JSON): a service did not accept it" in out and "s3cr3t" not in out
        assert main(["notify", "test", "--channel", "slack", "-f", str(f)]) != 0
        assert "no channel 'slack'; configured: webhook, apprise" in capsys.readouterr().err
    finally:
        hook.close()
        push.close()


async def test_the_rate_limit_turns_the_overflow_into_one_message_and_every_key_still_arrives(tmp_path):
    """Liveness first: without a limit, five blocks one after another are five messages; with two a minute,
    two go at once and the other three wait, then go as one message when the minute has passed."""
    for per_minute, messages in ((0, 5), (2, 3)):
        rec = Receiver()
        store = await Store.open(tmp_path / f"r{per_minute}.db")
        now = [time.time()]
        try:
            sender = WebhookSender(store, rec.url, per_minute=per_minute, clock=lambda now=now: now[0])
            keys = []
            async with httpx.AsyncClient() as client:
                for i in range(5):
                    b = await blocked_task(store, [f"reason {i}"])
                    keys.append(f"blocked:{b.task_id}:{b.id}")
                    await sender.deliver_due(client)
                if per_minute:
                    assert len(rec.got) == 2  # the limit holds the rest
                    now[0] += 61
                    assert await sender.deliver_due(client) == 3
            assert len(rec.got) == messages and rec.keys() == keys
        finally:
            await store.close()
            rec.close()


async def test_a_muted_product_waits_in_the_outbox_and_the_others_go(tmp_path):
    rec = Receiver()
    store = await Store.open(tmp_path / "c.db")
    try:
        a = await blocked_task(store, ["x"], product="shop")
        b = await blocked_task(store, ["y"], product="blog")
        async with httpx.AsyncClient() as client:
            assert await WebhookSender(store, rec.url, mute=["shop"]).deliver_due(client) == 1
            assert rec.keys() == [f"blocked:{b.task_id}:{b.id}"]
            await store.flush()
            assert {r["key"]: r["state"] for r in await outbox_rows(store)}[f"blocked:{a.task_id}:{a.id}"] == "pending"
            assert await WebhookSender(store, rec.url).deliver_due(client) == 1  # unmuted: it goes
            assert rec.keys()[-1] == f"blocked:{a.task_id}:{a.id}"
    finally:
        await store.close()
        rec.close()


async def test_a_block_reaches_the_desktop_through_notify_send_with_agent_markup_escaped(tmp_path, monkeypatch):
    """A notify-send stand-in on PATH (a real program run as a real subprocess) records its arguments; without a
    session the channel refuses and the row stays pending."""
    from cockpit.factory.notify_desktop import DesktopChannel

    bindir, log = tmp_path / "bin", tmp_path / "args"
    bindir.mkdir()
    (bindir / "notify-send").write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n--\\n" "$a"; done >> {log}\n')
    (bindir / "notify-send").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    for v in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.delenv(v, raising=False)
    store = await Store.open(tmp_path / "c.db")
    try:
        b = await blocked_task(store, ["<b>tests</b> failed & \x1b[31mred"])
        sender = WebhookSender(store, None, channels=[DesktopChannel()], backoff=0.01)
        assert await sender.deliver_due(None) == 0 and not log.exists()  # no session: nothing shown
        monkeypatch.setenv("DISPLAY", ":0")
        await asyncio.sleep(0.02)
        assert await sender.deliver_due(None) == 1
        args = log.read_text()
        assert "--app-name=cockpit" in args and "cockpit · shop" in args
        assert f"[shop {b.task_id}] blocked: &lt;b&gt;tests&lt;/b&gt; failed &amp;" in args and "\x1b" not in args
        assert f'cockpit send-back {b.task_id} -m "…"' in args
    finally:
        await store.close()


async def test_a_budget_past_80_and_100_percent_is_one_notice_each_with_the_command_to_raise_it(tmp_path):
    """Liveness first: without a limit the same spend makes no notice; with one, 80 % and 100 % once each (a
    further call past 100 % makes none), in the transaction of the settlement, delivered with the real verb."""
    from cockpit.domain.budget import BudgetLimits

    async def spend(store: Store, n: int) -> None:
        for i in range(n):
            await store.reserve(call_id=f"c{i}", task_id=None, product="shop", actor="builder-1", model="m",
                                usd=0.0)
            await store.settle(call_id=f"c{i}", task_id=None, product="shop", usd=3.0, usage={})

    store = await Store.open(tmp_path / "none.db")
    try:
        await spend(store, 4)
        assert await outbox_rows(store) == []
    finally:
        await store.close()
    rec = Receiver()
    store = await Store.open(tmp_path / "c.db", budgets=BudgetLimits(product_usd={"shop": 10.0}))
    try:
        await spend(store, 3)  # $3, $6, $9: 80 % crossed at the third
        assert [r["key"] for r in await outbox_rows(store)] == ["budget:product:shop:80"]
        with pytest.raises(Exception):  # noqa: B017 - $12 > $10: the reservation is refused, no notice from it
            await store.reserve(call_id="c9", task_id=None, product="shop", actor="builder-1", model="m", usd=3.0)
        for c in ("c3", "c4"):  # two calls in flight
            await store.reserve(call_id=c, task_id=None, product="shop", actor="builder-1", model="m", usd=0.0)
        await store.settle(call_id="c3", task_id=None, product="shop", usd=1.5, usage={})  # $10.50: 100 %
        await store.settle(call_id="c4", task_id=None, product="shop", usd=0.5, usage={})  # past it: no more
        rows = await outbox_rows(store)
        assert sorted(r["key"] for r in rows) == ["budget:product:shop:100", "budget:product:shop:80"]
        async with httpx.AsyncClient() as client:
            assert await WebhookSender(store, rec.url).deliver_due(client) == 2
        full = next(g for g in rec.got if g["key"] == "budget:product:shop:100")
        assert full["product"] == "shop" and "100% spent" in full["text"] and "$10.50 of $10.00" in full["text"]
        assert "cockpit budget raise --product shop --usd AMOUNT" in full["text"]
    finally:
        await store.close()
        rec.close()


async def test_the_header_marks_a_failing_channel_and_only_then():
    from textual.app import App

    from cockpit.tui.widgets.status_bar import Figures, StatusBar

    class Bar(App):
        def compose(self):
            yield StatusBar("Cockpit", id="bar")

    async with Bar().run_test(size=(160, 3)) as pilot:
        bar = pilot.app.query_one(StatusBar)
        bar.show(Figures(needs_you=1))
        assert "notices failing" not in str(bar.render())
        bar.show(Figures(needs_you=1, notify_failing=True))
        await pilot.pause()
        assert "✉ notices failing: cockpit notify list" in str(bar.render())


async def test_the_notifications_screen_lists_each_state_and_retries_the_failed(tmp_path):
    from textual.app import App
    from textual.widgets import DataTable

    from cockpit.config import FactoryConfig
    from cockpit.tui.screens.notifications import NotificationsScreen
    from tui_kit import until

    store = await Store.open(tmp_path / "c.db")
    try:
        b = await blocked_task(store, ["gate: tests \x1b[31mfailed [b]x[/b]"])
        await blocked_task(store, ["other"])
        await store.submit(None, [("UPDATE outbox SET state = 'failed', attempts = 12, last_error = 'HTTP 500' "
                                   "WHERE key = ?", (f"blocked:{b.task_id}:{b.id}",))])
        await store.flush()
        screen = NotificationsScreen(store, FactoryConfig())

        class Host(App):
            def on_mount(self):
                self.push_screen(screen)

        async with Host().run_test(size=(140, 20)) as pilot:
            await until(pilot, lambda: screen.loaded >= 1)
            table = screen.query_one(DataTable)
            cells = [str(c) for r in range(table.row_count) for c in table.get_row_at(r)]
            assert "failed" in cells and "pending" in cells and "HTTP 500" in cells
            assert not any("\x1b" in c for c in cells) and any("[b]x[/b]" in c for c in cells)  # content, not markup
            await pilot.press("r")
            await until(pilot, lambda: screen.loaded >= 2)
        assert sorted(r["state"] for r in await outbox_rows(store)) == ["pending", "pending"]
    finally:
        await store.close()
