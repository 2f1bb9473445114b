"""The terminal channel: a bell and an OSC 9 / OSC 777 desktop notice written to the controlling terminal.

Terminals that support them (iTerm2, WezTerm, kitty, foot, Windows Terminal, rxvt/VTE for 777) turn the OSC
into a desktop notification, and because it travels in the terminal's own byte stream it reaches the desktop
over SSH too. Inside tmux each OSC is wrapped in tmux's passthrough (`ESC P tmux; … ESC \\`, inner ESCs
doubled), which tmux forwards to the outer terminal (with `allow-passthrough on`). Notice text is agent
content: made visible on one line, and the OSC field separator `;` replaced, so nothing in a reason can end
the sequence early or start another one.
"""

from __future__ import annotations

import asyncio
import os

from ..domain.visible import visible_line

BEL = "\x07"


def _field(text: str, limit: int) -> str:
    """One OSC field: visible, one line, no ';' (it separates OSC 777's fields), no control byte."""
    return visible_line(text).replace(";", ",")[:limit]


def tmux_wrap(seq: str) -> str:
    """`seq` in tmux's passthrough: tmux hands it to the outer terminal unchanged."""
    return "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def terminal_notice(title: str, body: str, *, tmux: bool = False) -> str:
    """The bytes to write: BEL, then OSC 9 (body only: iTerm2, WezTerm, Windows Terminal) and OSC 777
    (title and body: VTE, rxvt, foot), each passthrough-wrapped inside tmux."""
    t, b = _field(title, 80), _field(body, 300)
    oscs = [f"\x1b]9;{t}: {b}{BEL}", f"\x1b]777;notify;{t};{b}{BEL}"]
    if tmux:
        oscs = [tmux_wrap(s) for s in oscs]
    return BEL + "".join(oscs)


class TerminalChannel:
    """Writes notices to a terminal (the controlling one, /dev/tty, by default); never blocks the loop."""

    name = "terminal"

    def __init__(self, path: str = "/dev/tty", *, tmux: bool | None = None) -> None:
        self.path = path
        self.tmux = bool(os.environ.get("TMUX")) if tmux is None else tmux

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    async def deliver(self, body: dict) -> str | None:
        """Show one message (a notice's or a batch's payload); None if written, else why not."""
        text = str(body.get("text") or "")
        first = text.splitlines()[0] if text else "a notice"
        title = "cockpit" + (f" · {body['product']}" if body.get("product") else "")
        seq = terminal_notice(title, first, tmux=self.tmux).encode("utf-8", "replace")
        try:
            await asyncio.to_thread(self._write, seq)
        except OSError as e:
            return f"terminal {self.path}: {e.strerror or e}"
        return None
