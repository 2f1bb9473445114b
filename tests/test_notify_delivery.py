"""Delivery state per channel: a notice on two channels is sent or failed on each; one channel failing never resends
to the one that accepted it and never marks the notice sent. Shown per channel by `cockpit notify list` and the
notifications screen, which says "no channel" instead of "pending" when [notify] configures none.
Two real receivers on 127.0.0.1 (the webhook, apprise's json://), real store files, the real CLI and screen."""

from __future__ import annotations

import asyncio

import httpx2 as httpx

from cockpit.cli import main
from cockpit.config import FactoryConfig, load_factory
from cockpit.factory.notify_apprise import AppriseChannel
from cockpit.factory.notify_sender import MAX_ATTEMPTS, WebhookSender, outbox_rows
from cockpit.store import Store
from notify_kit import Receiver
from test_notify_outbox import blocked_task


def two_channel_sender(store: Store, hook: Receiver, push: Receiver) -> WebhookSender:
    return WebhookSender(store, hook.url, channels=[AppriseChannel([push.url.replace("http://", "json://")])],
                         backoff=0.0001, max_backoff=0.0001)


async def deliver(sender: WebhookSender, times: int = 1) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(times):
            await sender.deliver_due(client)


async def test_a_failing_channel_never_resends_to_the_one_that_accepted_nor_marks_the_notice_sent(tmp_path):
    hook, push = Receiver(), Receiver()
    store = await Store.open(tmp_path / "c.db")
    try:
        b = await blocked_task(store, ["tests failed"])
        sender = two_channel_sender(store, hook, push)
        hook.fail = 1000  # the webhook is down
        await deliver(sender, 3)
        (row,) = await outbox_rows(store)
        assert row["state"] == "pending" and row["attempts"] == 3
        assert row["channels"]["apprise"]["state"] == "sent" and row["channels"]["webhook"]["state"] == "pending"
        assert row["channels"]["webhook"]["error"] == "HTTP 500" and row["channels"]["webhook"]["attempts"] == 3
        assert len(push.got) == 1 and len(hook.got) == 3  # apprise got it once, the webhook was tried three times

        # the attack, without the per-channel state (what the sender did before): a retry resends to apprise
        await store.submit(None, [("DELETE FROM outbox_delivery WHERE channel = 'apprise'", ())])
        await deliver(sender)
        assert len(push.got) == 2  # liveness: the duplicate lands when the state is gone

        # down for good: the notice is failed (not sent), apprise's copy still the one it has
        await deliver(sender, MAX_ATTEMPTS)
        (row,) = await outbox_rows(store)
        assert row["state"] == "failed" and row["channels"]["webhook"]["state"] == "failed"
        assert row["channels"]["apprise"]["state"] == "sent" and len(push.got) == 2

        # the human retries once the webhook is back: only the webhook gets it
        hook.fail = 0
        assert await asyncio.to_thread(main, ["notify", "retry", "-f", str(factory(tmp_path, store))]) == 0
        await deliver(sender)
        (row,) = await outbox_rows(store)
        assert row["state"] == "sent" and {c["state"] for c in row["channels"].values()} == {"sent"}
        assert len(push.got) == 2 and hook.keys()[-1] == f"blocked:{b.task_id}:{b.id}"
    finally:
        await store.close()
        hook.close()
        push.close()


def factory(tmp_path, store: Store, notify: str = "") -> object:
    """A factory.toml whose store is `store`'s file."""
    f = tmp_path / "factory.toml"
    f.write_text(f'[factory]\nname = "t"\nstore = "{store.path.name}"\n{notify}')
    assert load_factory(f).store_path == store.path.resolve()
    return f


async def test_notify_list_shows_each_channel_and_no_channel_instead_of_pending(tmp_path, capsys):
    hook, push = Receiver(), Receiver()
    store = await Store.open(tmp_path / "c.db")
    try:
        await blocked_task(store, ["tests failed"])
        hook.fail = 1
        await deliver(two_channel_sender(store, hook, push))
        await blocked_task(store, ["lint"])  # never tried
        await store.flush()
        f = factory(tmp_path, store, '\n[notify]\nterminal = true\n')
        assert await asyncio.to_thread(main, ["notify", "list", "-f", str(f)]) == 0
        out = capsys.readouterr().out
        assert "[apprise sent · webhook pending (HTTP 500)]" in out
        assert [line.split()[0] for line in out.splitlines()] == ["pending", "pending"]
        # no channel configured: the same rows are not "pending", they say why they do not go
        f = factory(tmp_path, store)
        assert await asyncio.to_thread(main, ["notify", "list", "-f", str(f)]) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert "no [notify] channel is configured" in lines[0]
        assert [line[:10] for line in lines[1:]] == ["no channel", "no channel"]
    finally:
        await store.close()
        hook.close()
        push.close()


async def test_the_screen_says_no_channel_configured_and_shows_each_channel(tmp_path):
    from textual.app import App
    from textual.widgets import DataTable, Static

    class Host(App):
        def __init__(self, screen) -> None:
            super().__init__()
            self.first = screen

        def on_mount(self) -> None:
            self.push_screen(self.first)

    from cockpit.tui.screens.notifications import NotificationsScreen
    from tui_kit import until

    hook, push = Receiver(), Receiver()
    store = await Store.open(tmp_path / "c.db")
    try:
        await blocked_task(store, ["tests failed"])
        hook.fail = 1
        await deliver(two_channel_sender(store, hook, push))
        for config, state, summary in [
                (FactoryConfig(), "no channel", "1 not sent: no channel configured ([notify] in factory.toml)"),
                (FactoryConfig.model_validate({"notify": {"terminal": True}}), "pending", "1 pending")]:
            screen = NotificationsScreen(store, config)

            async with Host(screen).run_test(size=(160, 20)) as pilot:
                await until(pilot, lambda s=screen: s.loaded >= 1)
                table = screen.query_one(DataTable)
                cells = [str(c) for c in table.get_row_at(0)]
                assert cells[0] == state and "apprise sent · webhook pending (HTTP 500)" in cells
                assert summary in str(screen.query_one("#notify-summary", Static).render())
    finally:
        await store.close()
        hook.close()
        push.close()


async def test_a_cockpit_that_does_not_run_the_sender_marks_failing_notices_from_the_outbox(store, config,
                                                                                          monkeypatch):
    """Another terminal or browser tab runs the factory (and its sender): this one reads the outbox for the mark."""
    from cockpit.tui import screens
    from cockpit.tui.app import CockpitApp
    from cockpit.tui.widgets.status_bar import StatusBar
    from tui_kit import until

    monkeypatch.setattr(screens.main, "NOTICES_EVERY_S", 0.1)
    b = await blocked_task(store, ["tests failed"])
    app = CockpitApp(store, config)  # no orchestrator: it watches
    async with app.run_test(size=(160, 40)) as pilot:
        bar = app.query_one(StatusBar)
        await until(pilot, lambda: app.main_screen.notices_checked >= 2)
        assert "notices failing" not in str(bar.render())  # pending, never tried: nothing failing yet
        # the other cockpit's sender records a failed try
        await store.submit(None, [("UPDATE outbox SET attempts = 1, last_error = 'webhook: HTTP 500' WHERE key = ?",
                                   (f"blocked:{b.task_id}:{b.id}",))])
        await until(pilot, lambda: "✉ notices failing: cockpit notify list" in str(bar.render()))
        await store.submit(None, [("UPDATE outbox SET state = 'sent', last_error = ''", ())])  # delivered at last
        await until(pilot, lambda: "notices failing" not in str(bar.render()))
