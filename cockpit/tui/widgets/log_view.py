"""A log file of any size, full screen: the Toolong way.

The file is never loaded. A thread scans it once (then only what is appended) and
keeps a *block index*: every ~64 KiB, cut at a line end, the byte offset and the
number of the first line. Counting newlines is C-speed (`bytes.count`), so a
million lines are indexed in a fraction of a second in a few kilobytes. The widget
is a `ScrollView` (the Line API): `render_line(y)` reads, splits and styles only
the rows on screen, from a small LRU cache of blocks and rendered strips.

Follow mode polls the file size and indexes only the new bytes; it backs off
while a scan is still running, as Toolong's watcher does.
"""

from __future__ import annotations

import array
import bisect
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.cache import LRUCache
from textual.events import MouseScrollUp
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

# a log file is outside text: shown, never obeyed
from ...domain.visible import visible_line

BLOCK = 64 * 1024
"""Target bytes per index block (a block always ends at a line end)."""
CHUNK = 4 * 1024 * 1024
"""Bytes read per system call while scanning."""
TAIL_BYTES = 256 * 1024
"""Read at once on opening, so the end shows before the index is built."""
POLL_S = 0.25
"""How often follow mode looks at the file size."""
MAX_LINE_CHARS = 4000
"""A longer line is cut when shown (a 100 MB line must not stall the screen)."""

_TIME = re.compile(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d")


@dataclass
class Scan:
    """What one scan added: blocks (offset, first line), the new end of complete lines, the file size."""

    offsets: array.array
    first_lines: array.array
    end: int
    lines: int
    size: int


def scan_file(path: Path, start: int = 0, first_line: int = 0) -> Scan:
    """Index `path` from byte `start` (a line start) to its last complete line."""
    offsets, firsts = array.array("q"), array.array("q")
    total, end, size = first_line, start, 0
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        chunk = CHUNK
        while end < size:
            data = os.pread(fd, chunk, end)
            if not data:
                break
            i, n = 0, len(data)
            while i < n:
                target = i + BLOCK
                nl = data.rfind(b"\n", i) if target >= n else data.find(b"\n", target - 1)
                if nl == -1:
                    nl = data.rfind(b"\n", i)
                if nl < i:
                    break
                offsets.append(end + i)
                firsts.append(total)
                total += data.count(b"\n", i, nl + 1)
                i = nl + 1
            if i == 0:
                if end + n >= size:
                    break  # only a partial last line is left
                chunk *= 2  # a line longer than the chunk: read more at once
                continue
            end += i
    finally:
        os.close(fd)
    return Scan(offsets, firsts, end, total, size)


class LineIndex:
    """Where each line of a file is, in blocks; applied from scans on the UI thread."""

    def __init__(self) -> None:
        self.offsets = array.array("q")
        self.first_lines = array.array("q")
        self.end = 0  # byte after the last complete line
        self.complete = 0  # complete lines (newlines seen)
        self.size = 0  # file size at the last scan

    def apply(self, scan: Scan) -> None:
        self.offsets.extend(scan.offsets)
        self.first_lines.extend(scan.first_lines)
        self.end, self.complete, self.size = scan.end, scan.lines, scan.size

    @property
    def line_count(self) -> int:
        """Complete lines, plus the last one while it is still being written."""
        return self.complete + (1 if self.size > self.end else 0)

    def block_of(self, line: int) -> int:
        return bisect.bisect_right(self.first_lines, line) - 1

    def block_span(self, block: int) -> tuple[int, int]:
        start = self.offsets[block]
        stop = self.offsets[block + 1] if block + 1 < len(self.offsets) else self.end
        return start, stop


class LogView(ScrollView, can_focus=True):
    """`LogView(path)`: shows the file, follows it, finds text in it."""

    COMPONENT_CLASSES = {"log-view--match", "log-view--current", "log-view--time"}
    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $text;
        overflow: scroll;
        & > .log-view--match { background: $warning 40%; }
        & > .log-view--current { background: $accent; color: $text; text-style: bold; }
        & > .log-view--time { color: $text-muted; }
    }
    """
    BINDINGS = [
        Binding("up", "scroll_up", "Up", show=False),
        Binding("down", "scroll_down", "Down", show=False),
        Binding("left", "scroll_left", "Left", show=False),
        Binding("right", "scroll_right", "Right", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "top", "Top", show=False),
        Binding("end", "end", "End", show=False),
    ]

    follow: reactive[bool] = reactive(True)
    """Stay at the end as lines are appended."""

    class Changed(Message):
        """The file was (re)indexed or the search moved: the screen's status line reads the view."""

        def __init__(self, view: "LogView") -> None:
            super().__init__()
            self.view = view

    def __init__(self, path: Path, *, follow: bool = True, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.path = Path(path)
        self.index = LineIndex()
        self.set_reactive(LogView.follow, follow)
        self.indexed = False  # the first scan is done
        self.missing = False
        self.search_term = ""
        self.current_match: int | None = None  # line of the match the search stopped on
        self._pattern: re.Pattern[bytes] | None = None
        self._text_pattern: re.Pattern[str] | None = None
        self._blocks: LRUCache[int, list[bytes]] = LRUCache(32)
        self._strips: LRUCache[tuple[int, int, str], Strip] = LRUCache(2048)
        self._scan_busy = False  # a scan is scheduled or running
        self._first_paint = False
        self._width = 0
        self._fd: int | None = None
        self._tail: list[bytes] = []  # the file's last lines, shown before the index is built
        self._estimate = 0
        self._styles: dict[str, Style] = {}

    # --- the file ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._read_tail()
        if not self._tail:
            self._request_scan()  # nothing to show first: index now
        # else the first paint (of the tail) starts the scan: its thread would compete with that paint for the GIL
        self.set_interval(POLL_S, self._poll)

    def _read_tail(self) -> None:
        """Show the end at once, before the index is built: the last lines, numbered from an estimate."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            size = os.fstat(fd).st_size
            start = max(size - TAIL_BYTES, 0)
            data = os.pread(fd, size - start, start)
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # it began mid-line
        if lines and lines[-1] == b"":
            lines.pop()
        if not lines:
            return
        self._tail = lines
        average = max(len(data) / max(len(lines), 1), 1.0)
        self._estimate = max(len(lines), round(size / average)) if start else len(lines)
        self._update_size()
        self._follow_end()
        self.post_message(self.Changed(self))

    def on_unmount(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _request_scan(self, *, after_refresh: bool = False) -> None:
        """One scan at a time: a thread worker cannot be cancelled, so never start a second beside it."""
        if self._scan_busy:
            return
        self._scan_busy = True
        if after_refresh:
            self.call_after_refresh(self._scan)
        else:
            self._scan()

    def _poll(self) -> None:
        if self._scan_busy or not self._first_paint:
            return  # back off: the last scan has not landed yet (or the first has not started)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if not self.missing:
                self.missing = True
                self.post_message(self.Changed(self))
            return
        if st.st_size != self.index.size or self.missing:
            self._request_scan()

    @work(thread=True, exclusive=True, group="log-index", exit_on_error=False)
    def _scan(self) -> None:
        try:
            index = self.index
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                self.app.call_from_thread(self._missing)
                return
            if size < index.size:  # truncated or replaced: start over
                scan = scan_file(self.path)
                self.app.call_from_thread(self._reset, scan)
            else:
                scan = scan_file(self.path, index.end, index.complete)
                self.app.call_from_thread(self._apply, scan)
        finally:
            self._scan_busy = False

    def _missing(self) -> None:
        self.missing = True
        self.indexed = True
        self.post_message(self.Changed(self))

    def _reset(self, scan: Scan) -> None:
        self._tail = []
        self.index = LineIndex()
        self._close()
        self._blocks.clear()
        self._strips.clear()
        self._apply(scan)

    def _apply(self, scan: Scan) -> None:
        was_tail = self.index.size > self.index.end
        self.index.apply(scan)
        self.missing = False
        if not self.indexed or was_tail:
            # numbers were estimated until now, or the line being written may be complete: draw again
            self._strips.clear()
        self.indexed = True
        self._tail = []
        self._update_size()
        self._follow_end()
        self.refresh()
        self.post_message(self.Changed(self))

    def _follow_end(self) -> None:
        """At the end when following; once laid out too (before that the view has no height to scroll by)."""
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)

    def on_resize(self) -> None:
        self._update_size()
        self._follow_end()

    def _update_size(self) -> None:
        self.virtual_size = Size(max(self._width, self.scrollable_content_region.width), self.line_count)

    def _read(self, start: int, stop: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return os.pread(self._fd, stop - start, start)

    def _block_lines(self, block: int) -> list[bytes]:
        lines = self._blocks.get(block)
        if lines is None:
            start, stop = self.index.block_span(block)
            lines = self._read(start, stop).split(b"\n")
            self._blocks[block] = lines  # a block never changes: new lines go to new blocks
        return lines

    @property
    def line_count(self) -> int:
        """Lines in the file (an estimate from the tail until the first scan lands)."""
        return self.index.line_count if self.indexed else self._estimate

    def get_line(self, line: int) -> str:
        """The text of line `line` (0-based), tabs expanded, cut at MAX_LINE_CHARS."""
        if line < 0 or line >= self.line_count:
            return ""
        index = self.index
        if not self.indexed:
            at = line - (self._estimate - len(self._tail))
            if at < 0:
                return ""  # above the tail: shown once the index is built
            raw = self._tail[at]
        elif line >= index.complete:  # the last line, still being written
            raw = self._read(index.end, index.size)
        else:
            block = index.block_of(line)
            raw = self._block_lines(block)[line - index.first_lines[block]]
        text = raw[: MAX_LINE_CHARS * 4].decode("utf-8", errors="replace").rstrip("\r\n")
        return text.expandtabs(4)[:MAX_LINE_CHARS]

    # --- drawing -------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    def render_line(self, y: int) -> Strip:
        if not self._first_paint:
            self._first_paint = True
            self._request_scan(after_refresh=True)
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        if self.follow and not self.indexed:
            # the end, whatever the scroll position says before the first layout: what the human opened it for
            scroll_y = max(self.line_count - self.scrollable_content_region.height, 0)
        line = scroll_y + y
        if line >= self.line_count:
            return Strip.blank(width, self.rich_style)
        strip = self._line_strip(line)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _line_strip(self, line: int) -> Strip:
        current = line == self.current_match
        key = (line, 1 if current else 0, self.search_term)
        cached = self._strips.get(key)
        if cached is not None:
            return cached
        text = Text(visible_line(self.get_line(line)), no_wrap=True, end="")
        m = _TIME.match(text.plain)
        if m:
            text.stylize(self._style("log-view--time"), *m.span())
        if self._text_pattern is not None:
            style = self._style("log-view--current" if current else "log-view--match")
            for hit in self._text_pattern.finditer(text.plain):
                text.stylize(style, *hit.span())
        segments = [Segment(s.text, (self.rich_style + s.style) if s.style else self.rich_style)
                    for s in text.render(self.app.console)]
        strip = Strip(segments, text.cell_len)
        if strip.cell_length > self._width:
            self._width = strip.cell_length
            self.call_after_refresh(self._update_size)
        self._strips[key] = strip
        return strip

    # --- moving ----------------------------------------------------------------------------

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        self.follow = False

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_top(self) -> None:
        self.follow = False
        self.scroll_home(animate=False, x_axis=False)

    def action_end(self) -> None:
        """To the last line, and keep following it."""
        self.follow = True
        self.scroll_end(animate=False, x_axis=False)

    def watch_follow(self, follow: bool) -> None:
        if follow and self.is_mounted:
            self.scroll_end(animate=False, x_axis=False)
        self.post_message(self.Changed(self))

    def go_to_line(self, line: int) -> None:
        """Put `line` in the middle of the view."""
        self.follow = False
        height = self.scrollable_content_region.height
        self.scroll_to(y=max(line - height // 2, 0), animate=False)

    # --- search ----------------------------------------------------------------------------

    def set_search(self, term: str) -> None:
        """Highlight `term` (case-insensitive) everywhere it is shown."""
        self.search_term = term
        self.current_match = None
        if term:
            self._pattern = re.compile(re.escape(term.encode("utf-8")), re.IGNORECASE)
            self._text_pattern = re.compile(re.escape(term), re.IGNORECASE)
        else:
            self._pattern = self._text_pattern = None
        self._strips.clear()
        self.refresh()

    def find(self, *, backwards: bool = False) -> None:
        """Go to the next (previous) line with the term, from the current match or the view; wraps around."""
        if self._pattern is None or not self.index.line_count:
            return
        if self.current_match is not None:
            start = self.current_match + (-1 if backwards else 1)
        else:
            start = self.scroll_offset.y if not backwards else self.scroll_offset.y + self.scrollable_content_region.height - 1
        self._find(self._pattern, start % max(self.index.line_count, 1), backwards)

    @work(thread=True, exclusive=True, group="log-search", exit_on_error=False)
    def _find(self, pattern: re.Pattern[bytes], start: int, backwards: bool) -> None:
        found = search_lines(self, pattern, start, backwards)
        self.app.call_from_thread(self._found, found)

    def _found(self, line: int | None) -> None:
        if line is None:
            self.current_match = None
            self.notify(f"{self.search_term!r} is not in this log.", severity="warning", timeout=3)
        else:
            self.current_match = line
            self._strips.clear()
            self.go_to_line(line)
        self.refresh()
        self.post_message(self.Changed(self))


def search_lines(view: LogView, pattern: re.Pattern[bytes], start: int, backwards: bool) -> int | None:
    """The first line from `start` on (backwards: from it back) matching `pattern`, wrapping around once.

    Reads block by block in a thread (never the UI's), so a million lines cost one pass at most."""
    index = view.index
    blocks, complete = len(index.offsets), index.complete
    units = blocks + (1 if index.size > index.end else 0)  # the line still being written is a unit of its own
    if not units:
        return None
    fd = os.open(view.path, os.O_RDONLY)
    try:
        def lines_in(unit: int) -> list[int]:
            if unit < blocks:
                (begin, stop), base = index.block_span(unit), index.first_lines[unit]
            else:
                (begin, stop), base = (index.end, index.size), complete
            data = os.pread(fd, stop - begin, begin)
            found: list[int] = []
            for m in pattern.finditer(data):
                line = base + data.count(b"\n", 0, m.start())
                if not found or found[-1] != line:
                    found.append(line)
            return found

        first = blocks if start >= complete else index.block_of(start)
        step = -1 if backwards else 1
        others = [(first + step * k) % units for k in range(1, units)]
        for unit, part in [(first, "from"), *((u, "all") for u in others), (first, "before")]:
            found = lines_in(unit)
            if part == "from":
                found = [ln for ln in found if (ln <= start if backwards else ln >= start)]
            elif part == "before":
                found = [ln for ln in found if (ln > start if backwards else ln < start)]
            if found:
                return found[-1] if backwards else found[0]
        return None
    finally:
        os.close(fd)
