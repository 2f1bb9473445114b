"""Every line the command line prints is made visible on its way to the terminal (cockpit.domain.visible).

Printing through `visible()` at each call site missed paths: `cockpit doctor` showed the last lines of a
product's failing test run raw (OSC 52 put a command in the clipboard, CSI 2J wiped the screen under a fake
"All good."), `rules show` printed a rule file's name raw, and a logged warning went out through Python's
last-resort handler. So the command line's `sys.stdout` and `sys.stderr` are wrapped once, in `main()`:
whatever is printed or logged through them shows its control characters and escape sequences instead of
obeying them. JSON output is unchanged (json.dumps escapes control characters itself). The full-screen
cockpit is not affected: Textual writes to the process's original streams (`sys.__stderr__`).
Bytes written to `.buffer` pass as they are: the one writer there (`cockpit tail`) makes them visible itself.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from ..domain.visible import visible


class VisibleStream(io.TextIOBase):
    """A text stream writing `visible(text)` to the stream it wraps."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(visible(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    @property
    def buffer(self):  # bytes: for writers that make their bytes visible themselves (cockpit tail)
        return self._stream.buffer


@contextmanager
def visible_output() -> Iterator[None]:
    """sys.stdout and sys.stderr wrapped for the duration (then put back: tests call main() in-process)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = VisibleStream(out), VisibleStream(err)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err
