"""Text from outside (an agent, a repository, a task, a note, a lesson) made safe to show: what it says is
visible, nothing in it acts.

One module for every output path (the screen, `cockpit tail`, `status`, the headless summary, `report`, the
agent log files a user opens with `less -R`): a terminal obeys escape sequences (OSC 52 writes the clipboard,
OSC 0 the window title, CSI 2J clears the screen, so an agent could paint a fake "ALL GATES PASSED" over the
real state), a carriage return overwrites the line it is on, and bidirectional controls reorder what is read.
Each of these is replaced by a visible stand-in (the Unicode control pictures: ESC shows as ␛), so the reader
sees that it was there and what it was. Newlines and tabs stay. Lone surrogates (invalid UTF-8 decoded with
`surrogateescape`) become U+FFFD. Markup is not this module's business: the screen shows text as text
(cockpit.tui.safe), HTML escapes it.
"""

from __future__ import annotations

from typing import Any

_TABLE: dict[int, str] = {}
for _c in range(0x20):
    _TABLE[_c] = chr(0x2400 + _c)  # ␀ ␁ … ␛ … ␟
del _TABLE[0x0A]  # newline: kept
del _TABLE[0x09]  # tab: kept
_TABLE[0x7F] = "\u2421"  # ␡
for _c in range(0x80, 0xA0):  # C1 controls: 0x9b is a one-byte CSI on some terminals
    _TABLE[_c] = f"\\x{_c:02x}"
for _c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):  # bidirectional controls
    _TABLE[_c] = f"<U+{_c:04X}>"
for _c in range(0xD800, 0xE000):  # lone surrogates: not text, and not encodable
    _TABLE[_c] = "\ufffd"
del _c

_ONE_LINE = dict(_TABLE)
_ONE_LINE[0x0A] = "\u23ce"  # ⏎
_ONE_LINE[0x09] = " "


def visible(text: object) -> str:
    """`text` with every control character and escape sequence introducer shown, not obeyed (\\r\\n is a
    newline; a lone \\r shows as ␍)."""
    s = text if isinstance(text, str) else str(text)
    if "\r\n" in s:
        s = s.replace("\r\n", "\n")
    return s.translate(_TABLE)


def visible_line(text: object) -> str:
    """As `visible`, on one line: a newline shows as ⏎ (a table cell, a title, a toast's heading)."""
    s = text if isinstance(text, str) else str(text)
    if "\r\n" in s:
        s = s.replace("\r\n", "\n")
    return s.translate(_ONE_LINE)


def visible_bytes(data: bytes) -> bytes:
    """Bytes for a terminal (`cockpit tail`): decoded as UTF-8 (invalid bytes become U+FFFD), made visible."""
    return visible(data.decode("utf-8", errors="replace")).encode("utf-8")


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def encodable(value: Any) -> Any:
    """`value` (str, or lists and dicts of them) with every lone surrogate (invalid UTF-8 read with
    `surrogateescape`) replaced by U+FFFD: such a string cannot be written as UTF-8 (JSON, SQLite), so
    one of them in a task's title would fail the write of everything committed with it."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in value) if _has_surrogate(value) \
            else value
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    return value


def is_visible(text: str) -> bool:
    """True if `visible(text) == text`: nothing in it a terminal would obey."""
    return visible(text) == text


__all__ = ["visible", "visible_line", "visible_bytes", "is_visible", "encodable"]
