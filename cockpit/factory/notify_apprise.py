"""Push channels (Slack, Telegram, Discord, ntfy, email, ...) through apprise: one URL per service.

Apprise URLs carry the service's token (`tgram://TOKEN/CHAT`, `ntfys://TOPIC`, `mailtos://user:pass@…`), so
they come from an environment variable or a file outside the repo named in `[notify]`, never from
factory.toml, and never reach the store or a log: an error names the service only, and apprise's own logger
(which may print a URL) is kept out of ours.
"""

from __future__ import annotations

import logging
import os

import apprise

from ..config import ConfigError, FactoryConfig

logging.getLogger("apprise").propagate = False  # its messages may quote a URL with its token


def apprise_urls(config: FactoryConfig) -> list[str]:
    """The apprise URLs `[notify]` names (whitespace/newline separated), or [] if none; ConfigError naming
    factory.toml and what to do (never the URLs themselves)."""
    n = config.notify
    where = f"{config.path or 'factory.toml'}: [notify]"
    if n.apprise_urls_env:
        text = os.environ.get(n.apprise_urls_env, "")
        if not text.strip():
            raise ConfigError(f"{where} apprise_urls_env names ${n.apprise_urls_env}, which is not set: export "
                              "it (one or more apprise URLs, e.g. ntfys://my-topic) or remove the setting")
    elif n.apprise_urls_file:
        path = config.resolve(n.apprise_urls_file)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"{where} apprise_urls_file {path}: cannot read it ({e.strerror}); write one "
                              "apprise URL a line in it (chmod 600), or remove the setting") from None
    else:
        return []
    urls = [u for u in text.split() if not u.startswith("#")]
    bad = [i + 1 for i, u in enumerate(urls) if apprise.Apprise.instantiate(u) is None]
    if bad:
        raise ConfigError(f"{where}: apprise URL number {', '.join(map(str, bad))} is not one apprise knows "
                          "(see its list of services; the URL is not shown here)")
    return urls


class AppriseChannel:
    """Sends each message to every apprise URL; accepted only if every service accepted it."""

    name = "apprise"

    def __init__(self, urls: list[str]) -> None:
        self.services = apprise.Apprise()
        for u in urls:
            self.services.add(u)
        self.names = [s.service_name or s.protocol for s in self.services]

    async def deliver(self, body: dict) -> str | None:
        text = str(body.get("text") or "a notice")
        title = "cockpit" + (f" · {body['product']}" if body.get("product") else "")
        try:
            ok = await self.services.async_notify(body=text, title=title)
        except Exception as e:  # noqa: BLE001 - a plugin error must not end deliveries; the text may hold a URL
            return f"apprise ({', '.join(map(str, self.names))}): {type(e).__name__}"
        return None if ok else f"apprise ({', '.join(map(str, self.names))}): a service did not accept it"
