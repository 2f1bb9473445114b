"""The desktop channel: `notify-send` (libnotify), where a graphical session exists.

Run as an argument list (no shell), through asyncio (never blocking the loop); the text is made visible on one
line first, so agent content in a reason is content, never markup (notify-send's body accepts some HTML:
`<`, `>` and `&` are escaped).
"""

from __future__ import annotations

import asyncio
import os
import shutil

from ..domain.visible import visible_line


def session_present() -> bool:
    """Whether a desktop session can show a notice (X11, Wayland, or a session bus)."""
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"))


def _markup_safe(text: str) -> str:
    return visible_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class DesktopChannel:
    name = "desktop"

    def __init__(self, program: str = "notify-send", timeout: float = 10.0) -> None:
        self.program, self.timeout = program, timeout

    def problem(self) -> str | None:
        """Why this channel cannot work here, or None."""
        if shutil.which(self.program) is None:
            return f"{self.program} not found (install libnotify-bin, or set desktop = false)"
        if not session_present():
            return "no desktop session (DISPLAY, WAYLAND_DISPLAY, DBUS_SESSION_BUS_ADDRESS unset)"
        return None

    async def deliver(self, body: dict) -> str | None:
        if (why := self.problem()) is not None:
            return why
        text = str(body.get("text") or "a notice").splitlines()
        title = "cockpit" + (f" · {body['product']}" if body.get("product") else "")
        proc = await asyncio.create_subprocess_exec(
            self.program, "--app-name=cockpit", "--urgency=normal", _markup_safe(title),
            "\n".join(_markup_safe(line) for line in text[:8]),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return f"{self.program}: no answer in {self.timeout:.0f} s"
        return None if proc.returncode == 0 else f"{self.program} exit {proc.returncode}: {visible_line(err)[:200]}"
