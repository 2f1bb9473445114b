"""The activity stream: one line per event, agents' streamed text joined into lines.

A `Log` (Textual's Line API: each visible line rendered on demand), because
agents produce text by the thousand lines and `RichLog` costs more per write.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Self

from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.geometry import Region
from textual.timer import Timer
from textual.widgets import Log

from ...domain.events import Event, Kind
from ...domain.visible import visible_line
from ...domain import format as fmt

_LINE = re.compile(r"^(?P<time>\d\d:\d\d:\d\d) (?P<actor>\S+)")
_BAD = re.compile(r"✗|⚠|\bFAIL\b|\bblocked\b|\brefused\b")
_GOOD = re.compile(r"✓|\bPASS\b|\bmerged\b")


class ActivityHighlighter(Highlighter):
    """Dim times, bold actors, failures in the theme's error colour and successes in its success colour."""

    def __init__(self) -> None:
        self.styles: dict[str, Style] = {}

    def set_colors(self, variables: dict[str, str]) -> None:
        fg = Color.parse(variables.get("foreground", "#e0e0e0"))
        bg = Color.parse(variables.get("background", "#121212"))
        self.styles = {
            "time": Style(color=fg.blend(bg, 0.45).rich_color),
            "actor": Style(bold=True),
            "bad": Style(color=Color.parse(variables.get("text-error", "red")).rich_color),
            "good": Style(color=Color.parse(variables.get("text-success", "green")).rich_color),
        }

    def highlight(self, text: Text) -> None:
        if not self.styles:
            return
        plain = text.plain
        m = _LINE.match(plain)
        if m is None:
            return
        text.stylize(self.styles["time"], *m.span("time"))
        text.stylize(self.styles["actor"], *m.span("actor"))
        rest = m.end()
        for pattern, key in ((_BAD, "bad"), (_GOOD, "good")):
            for hit in pattern.finditer(plain, rest):
                text.stylize(self.styles[key], *hit.span())


class ActivityLog(Log):
    """Appends events in batches; text chunks wait for their newline (or the agent's next act)."""

    FLUSH_AFTER = 0.6
    """Seconds of quiet after which a half-written line is shown anyway."""
    WRAP_AT = 200
    """A line streamed without a newline is cut at this length."""

    _content_only = False
    """True while a write is in progress (see _write)."""

    LINE_WIDTH = 240
    """Lines are cut to this, and the view is this wide from the start: a virtual size that never changes (once
    max_lines is reached) costs no layout, and a layout repaints the whole screen."""

    def __init__(self, *, max_lines: int = 2000, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=max_lines, highlight=True, id=id, classes=classes)
        self._width = self.LINE_WIDTH
        self.highlighter = ActivityHighlighter()
        self.last_event_id = 0
        self.following = True
        self._partial: dict[str, tuple[float, str]] = {}
        self._flush_timer: Timer | None = None
        self._day: str | None = None  # the local date of the last line written

    def on_mount(self) -> None:
        self.border_title = "Activity"

    def notify_style_update(self) -> None:
        """The theme (or our CSS) changed: take its colours; the Log drops its line cache."""
        if self.is_attached:
            self.highlighter.set_colors(self.app.get_css_variables())
        super().notify_style_update()

    def add_events(self, events: Iterable[Event]) -> None:
        """One batch from the bridge: all its lines go in with a single write."""
        lines: list[str] = []
        for ev in events:
            if ev.id is not None:
                if ev.id <= self.last_event_id:
                    continue  # already shown (history and live stream may overlap)
                self.last_event_id = ev.id
            lines.extend(self._day_line(ev.ts))
            lines.extend(self._lines_for(ev))
        if lines:
            self._write(lines)
        if self._partial:
            if self._flush_timer is not None:
                self._flush_timer.stop()
            self._flush_timer = self.set_timer(self.FLUSH_AFTER, self.flush_partial)

    def _day_line(self, ts: float) -> list[str]:
        """A date line where the stream changes day (and before a first day that is not today): times alone
        would mix days."""
        day = time.strftime("%Y-%m-%d", time.localtime(ts))
        if day == self._day:
            return []
        clock = getattr(self.app, "clock", time.time) if self.is_attached else time.time
        shown_before, self._day = self._day, day
        if shown_before is None and day == time.strftime("%Y-%m-%d", time.localtime(clock())):
            return []
        return [f"── {time.strftime('%a %d %b %Y', time.localtime(ts))} ──"]

    def flush_partial(self) -> None:
        """Show every half-written line now."""
        lines = [self._text_line(agent, ts, text) for agent, (ts, text) in self._partial.items() if text.strip()]
        self._partial.clear()
        if lines:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        """Follow the stream, unless the human scrolled up to read: then stay put.

        A write grows the log's virtual height, a reactive that lays out the whole screen (12-23 ms at
        160x48, so a key pressed meanwhile waited: the p99 of key -> repaint under 20 agents was ~60 ms).
        The log's box is set by CSS, not by its content: only its scrollbar must follow, so the write asks
        for a repaint and the scrollbar is updated here (a scrollbar that appears still gets its layout)."""
        self._content_only = True
        try:
            self.write_lines([fmt.truncate(visible_line(line), self.LINE_WIDTH) for line in lines],
                             scroll_end=self.following)
        finally:
            self._content_only = False
        self._scroll_update(self.virtual_size)
        if self.following:
            # before the first layout there is no height to scroll by: be at the end once there is
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        if self._content_only:
            layout = False  # see _write
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def watch_scroll_y(self, old: float, new: float) -> None:
        """Scrolling up (by the human) stops following; reaching the end again resumes it."""
        super().watch_scroll_y(old, new)
        # one line of slack: a scrollbar appearing must not count as the human scrolling up
        at_end = new >= self.max_scroll_y - 1
        if at_end:
            self.following = True
        elif new < old:
            self.following = False

    def _lines_for(self, ev: Event) -> list[str]:
        agent = str(ev.data.get("agent") or ev.actor)
        if ev.kind != Kind.AGENT_TEXT:
            out = self._take_partial(agent)
            line = fmt.event_line(ev)
            if line is not None:
                out.append(line)
            return out
        ts, buf = self._partial.get(agent, (ev.ts, ""))
        buf += str(ev.data.get("text", ""))
        out: list[str] = []
        while "\n" in buf:
            head, buf = buf.split("\n", 1)
            if head.strip():
                out.append(self._text_line(agent, ts, head))
            ts = ev.ts
        while len(buf) > self.WRAP_AT:
            out.append(self._text_line(agent, ts, buf[: self.WRAP_AT]))
            buf, ts = buf[self.WRAP_AT :], ev.ts
        if buf:
            self._partial[agent] = (ts, buf)
        else:
            self._partial.pop(agent, None)
        return out

    def _take_partial(self, agent: str) -> list[str]:
        ts, text = self._partial.pop(agent, (0.0, ""))
        return [self._text_line(agent, ts, text)] if text.strip() else []

    @staticmethod
    def _text_line(agent: str, ts: float, text: str) -> str:
        return f"{fmt.prefix(ts, agent)} │ {text.rstrip()}"
