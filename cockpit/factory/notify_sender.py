"""Delivers the outbox (cockpit.store.schema migration 6) to a JSON webhook: at least once, with backoff.

A row is marked sent only after the receiver answered 2xx, in a store transaction of its own; a process
killed between the answer and that mark resends the row after restart, and the payload's `key` lets the
receiver drop the copy. Never blocks the event loop: HTTP through httpx's async client, SQLite through
the store. The webhook URL may carry a token: it never appears in an error we record or log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

try:
    import httpx2 as httpx  # what the anthropic SDK depends on (the httpx API, renamed)
except ImportError:  # pragma: no cover - SDKs before the httpx2 switch
    import httpx  # type: ignore[no-redef]

from ..config import ConfigError, FactoryConfig
from ..domain.notices import Notice, in_quiet_hours, parse_clock, parse_quiet_hours
from ..domain.tasks import TaskState
from ..domain.visible import visible_line
from ..store.store import Store
from ..store import outbox
from .notify_digest import digest_if_due, due
from .notify_link import link_base, task_link

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
GATHER_S = 0.05
"""After a commit wakes the sender, it waits this long for the rest of a burst before it looks at the outbox."""
STALE_AFTER_S = 3600.0
"""A notice not yet delivered whose task has moved on (no longer blocked) and whose block is older than this is
not sent: it is news to nobody (a factory that turns notifications on, or the demo's seeded history, would
otherwise page the human for last month's blocks). A block resolved within the hour is still sent."""
"""After this many failed tries a row is `failed` (shown, retried only by hand: `cockpit notify retry`)."""


def redact(text: str, url: str | None) -> str:
    """`text` without the secret parts of `url` (path, query, user info): only scheme and host remain."""
    if not url:
        return text
    parts = urlsplit(url)
    safe = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"
    out = text.replace(url, safe)
    for secret in (parts.path, parts.query, parts.password or "", parts.username or ""):
        if len(secret) > 1:
            out = out.replace(secret, "…")
    return out


def payload(key: str, n: Notice, base: str | None = None) -> dict:
    """The JSON a webhook receives: the notice's fields, its text, and the dedup key; with `base` (the browser
    cockpit's URL), a link to the task too, also as the text's last line."""
    link = task_link(base, n.task_id) if base and n.task_id else None
    return {"key": key, "kind": n.kind, "product": n.product, "task_id": n.task_id, "reason": n.reason,
            "actions": n.actions, "text": n.text() + (f"\n  open: {link}" if link else ""),
            **({"link": link} if link else {})}


def batch_payload(notices: list[tuple[str, Notice]], *, digest: bool = False, base: str | None = None) -> dict:
    """One message for several notices: each with its key (the receiver dedups by key), the text listing
    them once per (task, reason): a task that blocked again for the same reason in the window is one line."""
    seen: set[tuple] = set()
    texts = []
    for k, n in notices:
        if (n.product, n.task_id, n.kind, n.reason) not in seen:
            seen.add((n.product, n.task_id, n.kind, n.reason))
            texts.append(payload(k, n, base)["text"])
    head = f"{len(texts)} things need you" if len(texts) > 1 else ""
    if digest:
        head = f"while you were away (quiet hours): {len(texts)} thing{'s' if len(texts) != 1 else ''} need you"
    return {"digest": digest, "keys": [k for k, _ in notices], "notices": [payload(k, n, base) for k, n in notices],
            "text": "\n\n".join([head, *texts] if head else texts)}


class _Row(NamedTuple):
    """A due outbox row, its notice parsed."""

    id: int
    key: str
    notice: Notice
    attempts: int
    created: float
    product: str | None


class WebhookSender:
    """Sends due outbox rows to one webhook; `run()` is the factory's long-lived task."""

    def __init__(self, store: Store | None, url: str | None, *, timeout: float = 5.0, backoff: float = 0.5,
                 max_backoff: float = 300.0, poll: float = 0.5, window: float = 0.0,
                 channels: list | None = None, quiet: tuple[int, int] | None = None,
                 clock=time.time, mute: list[str] | None = None, per_minute: int = 0,
                 stale_after_s: float = STALE_AFTER_S, digest_at: int | None = None,
                 routes: dict[str, list[str]] | None = None,
                 link_base: Callable[[], str | None] | None = None, gather: float = GATHER_S) -> None:
        self.store, self.url = store, url
        self.gather = gather
        self.timeout, self.backoff, self.max_backoff, self.poll = timeout, backoff, max_backoff, poll
        self.window = window  # batching: notices within this many seconds go as one message
        self.channels = list(channels or [])  # more channels (terminal): each has `deliver(body) -> err | None`
        self.quiet = quiet  # quiet hours (start, end) in local minutes of the day: held, then one digest
        self.clock = clock
        self.mute = list(mute or [])  # products whose notices wait in the outbox until unmuted
        self.per_minute = per_minute  # per channel: at most this many messages a minute (0: no limit); the overflow: one
        self._posted: dict[str, list[float]] = {}  # per channel, when its recent messages went out (the limit's window)
        self.stale_after_s = stale_after_s
        self.failing = False  # the last try failed: the header shows a mark
        self.routes = dict(routes or {})  # product -> the channels its notices go to (absent: every channel)
        self.link_base = link_base  # where task links point now (a running `cockpit serve`), or None: no link
        self.digest_at = digest_at  # the daily digest's local time, minutes of the day (None: no digest)
        self._digested: str | None = None  # the last date whose digest is in the outbox

    def delay(self, attempts: int) -> float:
        """Exponential backoff after `attempts` failures, capped."""
        return min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1))

    async def send_one(self, client: httpx.AsyncClient, key: str, notice: Notice) -> str | None:
        """POST one notice on every channel; None if all accepted, else why not (the URL's secrets redacted)."""
        return await self._post(client, payload(key, notice))

    def _free(self, channel: str, now: float) -> int:
        """How many more messages the rate limit lets `channel` send now (a large number when there is none).
        Each channel has its own minute: a product routed to a busy channel never holds up another channel."""
        if self.per_minute <= 0:
            return 1 << 30
        recent = self._posted[channel] = [t for t in self._posted.get(channel, []) if now - t < 60]
        return self.per_minute - len(recent)

    def channel_names(self) -> list[str]:
        """Every channel this sender delivers on: the webhook (if a URL is set), then the others."""
        return (["webhook"] if self.url else []) + [c.name for c in self.channels]

    def routed(self, product: str | None) -> list[str]:
        """The channels a notice of `product` goes to: its `[notify.routes]` entry, else every channel (a
        factory-level notice, the model or a day budget, goes everywhere)."""
        names = self.channel_names()
        if product is not None and product in self.routes:
            return [n for n in names if n in self.routes[product]]
        return names

    async def _on(self, client: httpx.AsyncClient, name: str, body: dict) -> str | None:
        """Deliver `body` on one channel; None if it accepted, else why not (the webhook URL's secrets redacted)."""
        if name == "webhook":
            try:
                r = await client.post(self.url, json=body, timeout=self.timeout)  # type: ignore[arg-type]
            except (httpx.HTTPError, OSError) as e:
                return redact(f"{type(e).__name__}: {e}", self.url)[:500]
            return None if 200 <= r.status_code < 300 else f"HTTP {r.status_code}"
        err = await next(c for c in self.channels if c.name == name).deliver(body)
        return redact(err, self.url) if err is not None and self.url else err

    async def _post(self, client: httpx.AsyncClient, body: dict) -> str | None:
        """Deliver `body` on every channel (`notify test`, one-off sends); None only if all accepted."""
        for name in self.channel_names():
            err = await self._on(client, name, body)
            if err is not None:
                return err
        return None

    def is_quiet(self, ts: float) -> bool:
        """Whether `ts` falls in the quiet hours (local time; a span may cross midnight)."""
        return self.quiet is not None and in_quiet_hours(ts, self.quiet)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Try every pending row whose time has come, oldest first; returns how many were sent.

        With a batching window, nothing goes until the oldest due row is `window` seconds old; then all due
        rows go as one message listing them (a task that blocked twice for the same reason is listed once).
        Each row goes to the channels routed to its product ([notify.routes]); a message listing several
        goes to each channel with the rows routed to it."""
        assert self.store is not None
        now = self.clock()
        if self.digest_at is not None:
            await self._digest(now)
        if self.is_quiet(now):
            return 0  # held: the quiet hours end with one digest
        found = await outbox.due(self.store, now, muted=sorted(self.mute))
        stale = [r.id for r in found if self._stale(r.task_id, r.created_ts, now)]
        if stale:
            await outbox.mark_stale(self.store, stale)
        rows = [_Row(r.id, r.key, Notice.model_validate_json(r.body), r.attempts, r.created_ts, r.product)
                for r in found if r.id not in stale]
        if not rows:
            return 0
        names = self.channel_names()
        if names and all(self._free(n, now) <= 0 for n in names):
            return 0  # the rate limit: they wait, and go as one message when a slot frees
        held = [r for r in rows if self.is_quiet(r.created)]
        if held:  # the quiet hours just ended: one message
            return await self._send(client, rows, together=True, digest=True)
        if self.window <= 0:
            return await self._send(client, rows, together=False)
        if now - min(r.created for r in rows) < self.window:
            return 0  # the window is open: more may come, to go in the same message
        return await self._send(client, rows, together=True)

    async def _send(self, client: httpx.AsyncClient, rows: list["_Row"], *, together: bool,
                    digest: bool = False) -> int:
        """Deliver `rows` on their routed channels: one message per channel listing them (`together`, or more rows
        than the channel's rate limit allows now), or one per row; a channel at its limit is skipped (its rows
        wait for it). Then record the outcome. Returns how many rows are now sent."""
        now = self.clock()
        results: dict[int, dict[str, str | None]] = {r.id: {} for r in rows}
        base = self.link_base() if self.link_base is not None else None
        done = await self._accepted([r.id for r in rows])
        for name in self.channel_names():
            # a channel that accepted a row before (a retry after another channel failed) does not get it again
            todo = [r for r in rows if name in self.routed(r.product) and name not in done.get(r.id, ())]
            if not todo:
                continue
            free = self._free(name, now)
            if free <= 0:
                continue  # this channel's limit: its rows wait (no try counted), the other channels go on
            one = together or len(todo) > free
            self._posted.setdefault(name, []).extend([now] * (1 if one else len(todo)))
            if one:
                err = await self._on(client, name, batch_payload([(r.key, r.notice) for r in todo], digest=digest,
                                                                base=base))
                for r in todo:
                    results[r.id][name] = err
            else:
                for r in todo:
                    results[r.id][name] = await self._on(client, name, payload(r.key, r.notice, base))
        return await self._record(rows, results, done)

    async def _digest(self, now: float) -> None:
        """Today's digest into the outbox once its hour has passed (once a day: the outbox key is the date)."""
        date = time.strftime("%Y-%m-%d", time.localtime(now))
        if date != self._digested and due(now, self.digest_at):  # type: ignore[arg-type]
            await digest_if_due(self.store, now, self.digest_at)  # type: ignore[arg-type]
            self._digested = date

    def _stale(self, task_id: str | None, created_ts: float, now: float) -> bool:
        """The notice's task is no longer blocked and its block is older than `stale_after_s`."""
        if task_id is None or now - created_ts < self.stale_after_s:
            return False
        task = self.store.task(task_id) if self.store is not None else None
        return task is not None and task.state != TaskState.BLOCKED

    async def _accepted(self, ids: list[int]) -> dict[int, set[str]]:
        """For each row, the channels that already accepted it."""
        assert self.store is not None
        return await outbox.accepted(self.store, ids)

    async def _record(self, rows: list["_Row"], results: dict[int, dict[str, str | None]],
                      done: dict[int, set[str]] | None = None) -> int:
        """Each channel's outcome on each row, and each row sent (every channel routed to it has accepted it:
        now, or before) or due again after a backoff, in one transaction; returns how many rows are sent."""
        assert self.store is not None
        now, sent = self.clock(), 0
        outcomes: list[outbox.ChannelOutcome] = []
        sent_ids: list[int] = []
        retries: list[outbox.RowRetry] = []
        self.failing = any(e is not None for res in results.values() for e in res.values())
        for r in rows:
            errs = {name: e for name, e in results[r.id].items() if e is not None}
            given_up = bool(errs) and r.attempts + 1 >= MAX_ATTEMPTS
            for name, e in results[r.id].items():
                outcomes.append(outbox.ChannelOutcome(r.id, name, "sent" if e is None else "failed" if given_up
                                                      else "pending", e or "", now if e is None else None))
            accepted = (done or {}).get(r.id, set()) | {name for name, e in results[r.id].items() if e is None}
            if not errs and not set(self.routed(r.product)) <= accepted:
                continue  # held by a channel's rate limit: no try counted, due again at once
            if not errs:
                sent += 1
                sent_ids.append(r.id)
                continue
            n = r.attempts + 1
            err = "; ".join(f"{name}: {e}" for name, e in errs.items())[:500]
            log.warning("notice %s: delivery failed (try %d): %s", r.key, n, err)
            retries.append(outbox.RowRetry(r.id, n, now + self.delay(n), err,
                                           "failed" if n >= MAX_ATTEMPTS else "pending"))
        await outbox.record(self.store, outcomes=outcomes, sent=sent_ids, retries=retries, now=now)
        return sent

    async def run(self) -> None:
        """Deliver until cancelled: at once when the store commits something, else every `poll` seconds."""
        assert self.store is not None
        sub = self.store.subscribe()
        try:
            # the client's TLS context loads the system's certificates: tens of milliseconds, off the loop
            async with await asyncio.to_thread(httpx.AsyncClient) as client:
                while True:
                    try:
                        await self.deliver_due(client)
                    except Exception as e:  # a store hiccup must not end deliveries for good
                        log.warning("notify sender: %s", redact(str(e), self.url))
                    try:
                        await asyncio.wait_for(sub.get(), self.poll)
                        # a burst of commits is one pass, not one each: every pass is a query and a write in
                        # the store's thread, which the screen's loop feels under a burst (issue 21's bench)
                        await asyncio.sleep(self.gather)
                        sub.drain()
                    except TimeoutError:
                        pass
        finally:
            sub.close()


async def outbox_rows(store: Store) -> list[dict]:
    """Every outbox row, newest first, with its state on each channel it was tried on, for `cockpit notify list`
    and the screen."""
    rows = await outbox.every_row(store)
    channels = await outbox.channel_states(store)
    return [{"id": r[0], "key": r[1], "state": r[2], "attempts": r[3], "error": r[4], "created": r[5],
             "sent": r[6], "notice": json.loads(r[7]), "channels": channels.get(r[0], {})} for r in rows]


NO_CHANNEL = "no channel"
"""What a pending notice is shown as when [notify] configures no channel: it will not go anywhere by itself."""


def shown_state(row: dict, config: FactoryConfig) -> str:
    """The state to show: a pending notice with no channel configured is not on its way, it says so."""
    return NO_CHANNEL if row["state"] == "pending" and not config.notify.configured else row["state"]


def channel_states(row: dict) -> str:
    """`webhook sent · apprise failed (HTTP 500)`: each channel the notice was tried on, one line."""
    return " · ".join(f"{name} {c['state']}" + (f" ({visible_line(c['error'])[:60]})" if c["error"] else "")
                      for name, c in row["channels"].items())


def webhook_url(config: FactoryConfig) -> str | None:
    """The webhook URL `[notify]` names (an environment variable or a file), or None if none is configured.

    Raises ConfigError naming factory.toml and what to do; the message never contains the URL itself."""
    n = config.notify
    where = f"{config.path or 'factory.toml'}: [notify]"
    if n.webhook_url_env:
        url = os.environ.get(n.webhook_url_env, "").strip()
        if not url:
            raise ConfigError(f"{where} webhook_url_env names ${n.webhook_url_env}, which is not set: export it "
                              "(the webhook URL) before starting the cockpit, or remove the setting")
    elif n.webhook_url_file:
        path = config.resolve(n.webhook_url_file)
        try:
            url = path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"{where} webhook_url_file {path}: cannot read it ({e.strerror}); write the "
                              "webhook URL in it (one line, chmod 600), or remove the setting") from None
    else:
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{where}: the webhook URL must start with http:// or https:// (it is not shown here)")
    return url


def notifier_for(config: FactoryConfig, store: Store | None, url: str | None) -> WebhookSender | None:
    """The sender `[notify]` describes (webhook, terminal, quiet hours, window), or None if no channel is set."""
    from .notify_apprise import AppriseChannel, apprise_urls  # noqa: PLC0415 - apprise loads only when used
    from .notify_desktop import DesktopChannel  # noqa: PLC0415
    from .notify_terminal import TerminalChannel  # noqa: PLC0415

    n = config.notify
    channels: list = [TerminalChannel()] if n.terminal else []
    if n.desktop:
        channels.append(DesktopChannel())
    if n.apprise_urls_env or n.apprise_urls_file:
        channels.append(AppriseChannel(apprise_urls(config)))  # a bad URL stops the start, naming the file
    if not url and not channels:
        return None
    return WebhookSender(store, url, timeout=n.timeout_s, window=n.batch_window_s, channels=channels,
                         quiet=parse_quiet_hours(n.quiet_hours) if n.quiet_hours else None,
                         mute=n.mute, per_minute=n.max_per_minute,
                         digest_at=parse_clock(n.digest) if n.digest else None, routes=n.routes,
                         link_base=lambda: link_base(config))


class WebhookChannel:
    """The JSON webhook as a channel of its own (`cockpit notify test --channel webhook`, doctor)."""

    name = "webhook"

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    async def deliver(self, body: dict) -> str | None:
        async with httpx.AsyncClient() as client:
            return await WebhookSender(None, self.url, timeout=self.timeout)._post(client, body)


def channels_of(config: FactoryConfig) -> list:
    """Every channel `[notify]` turns on, by name (webhook, terminal, apprise); ConfigError as at start."""
    url = webhook_url(config)
    sender = notifier_for(config, None, url)
    if sender is None:
        return []
    return ([WebhookChannel(url, config.notify.timeout_s)] if url else []) + sender.channels


async def send_test(config: FactoryConfig, only: str | None = None) -> list[tuple[str, str | None]]:
    """Send one test notice on each channel (or on `only`) now, outside the outbox: [(channel, error or None)].

    Raises ConfigError if no channel is configured, or `only` names none of them."""
    channels = channels_of(config)
    names = [c.name for c in channels]
    if not channels:
        raise ConfigError(f"{config.path}: no [notify] channel: set webhook_url_env / webhook_url_file, "
                          "apprise_urls_env / apprise_urls_file, or terminal = true")
    if only is not None and only not in names:
        raise ConfigError(f"{config.path}: [notify] has no channel {only!r}; configured: {', '.join(names)}")
    key = f"test:{time.time():.0f}"
    notice = Notice(key=key, kind="test", reason="a test notice from the cockpit", actions=["cockpit notify list"])
    return [(c.name, await c.deliver(payload(key, notice))) for c in channels if only in (None, c.name)]


async def retry_failed(store: Store) -> int:
    """Put every failed row back in the queue, due now (`cockpit notify retry`); returns how many."""
    return await outbox.requeue_failed(store)
