"""Agent logs: one plain-text file per agent under the factory's `memory/logs/`, written from the event stream.

Why files: the cockpit's log screen and `cockpit tail builder-3 --follow` read them the way `tail -f`
reads any log, from any process, and a million lines cost disk, not memory. The store stays the
record; a log is a rendering of it that can always be rebuilt (delete `logs/` and restart).

The writer subscribes to the store (before it reads the backlog, so nothing falls between),
catches up from the id in `logs/.cursor`, and appends in batches from a thread. Streamed text is
written as it comes: a prefix at each line start, no waiting for the newline, so a follower sees
an agent type. When it stops it reads the store up to its last committed event, so a session
shorter than one batch (a headless run whose builder blocks at its first call) still ends in its
log, and a run that stopped early is caught up by the next one.

Complete means: an agent's own events, what its commands printed (the `output` of a tool result,
as the model got it, capped by the loop), and the events of the task it builds that name no agent
(its verdicts, why it blocked, its merge), which go to the log of the task's builder.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import FactoryConfig
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from ..domain.visible import visible, visible_line
from ..store import Store

log = logging.getLogger(__name__)

LOGS_DIR = "logs"
CURSOR_FILE = ".cursor"
SUFFIX = ".log"
_AGENT = re.compile(r"^(builder|reviewer|breaker|[a-z][a-z0-9_]*)-\d+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,80}$")
_BACKLOG_PAGE = 5000
_PIECES = re.compile(r"[^\n]*\n|[^\n]+")  # lines with their newline; only \n ends a line (the rest is shown)


def logs_dir(config: FactoryConfig) -> Path:
    """`memory/logs/` of the factory (hidden from agents with the rest of the store's directory)."""
    return config.memory_path / LOGS_DIR


def log_path(directory: Path, agent: str) -> Path:
    """The log file of `agent`; a name that could leave the directory is refused."""
    if not _SAFE_NAME.match(agent) or agent in (".", ".."):
        raise Refused(f"{agent!r} is not an agent name (e.g. builder-3)")
    return directory / f"{agent}{SUFFIX}"


def known_agents(directory: Path) -> list[str]:
    """Agents that have a log, most recently written first."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.glob(f"*{SUFFIX}") if p.is_file()]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.name[: -len(SUFFIX)] for p in files]


def agent_of(event: Event) -> str | None:
    """Whose log an event belongs to: the agent it names, or the agent that acted."""
    named = event.data.get("agent") if isinstance(event.data, dict) else None
    if isinstance(named, str) and _AGENT.match(named):
        return named
    return event.actor if _AGENT.match(event.actor) else None


def stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


OUTPUT_PREFIX = "    ┆ "
# a task's events its builder's log leaves out: made before the builder was; a call's cost (its model.call says it)
_NOT_ROUTED = frozenset({Kind.TASK_CREATED, Kind.SPEND})


class LineMaker:
    """Events → text per agent. Text chunks are written as they come, prefixed at each line start.

    `builders` (task id → its builder), when given, routes a task's events that name no agent (a
    verdict, a block, a merge) to the builder's log; it follows `task.started` as the events pass."""

    def __init__(self, describe: Callable[[Event], str | None] | None = None, *,
                 builders: dict[str, str] | None = None) -> None:
        if describe is None:
            from ..domain.format import describe as describe_event

            describe = describe_event
        self.describe = describe
        self.mid_line: set[str] = set()  # agents whose last write ended without a newline
        self.builders = builders

    def _owner(self, event: Event) -> str | None:
        agent = agent_of(event)
        if self.builders is None:
            return agent
        if event.kind == Kind.TASK_STARTED and event.task_id and isinstance(event.data.get("agent"), str):
            self.builders[event.task_id] = event.data["agent"]
        if agent is None and event.task_id and event.kind not in _NOT_ROUTED:
            return self.builders.get(event.task_id)
        return agent

    def feed(self, event: Event) -> tuple[str, str] | None:
        """(agent, text to append) or None when the event is not an agent's or not worth a line."""
        agent = self._owner(event)
        if agent is None:
            return None
        if event.kind == Kind.AGENT_TEXT:
            return agent, self._text(agent, event.ts, str(event.data.get("text", "")))
        what = self.describe(event)
        if what is None:
            return None
        head = "\n" if agent in self.mid_line else ""
        self.mid_line.discard(agent)
        out = f"{head}{stamp(event.ts)} {visible_line(what)}\n"
        if event.kind == Kind.AGENT_TOOL_RESULT and isinstance(event.data.get("output"), str):
            out += output_block(event.data["output"])
        elif event.kind == Kind.BLOCKED and isinstance(event.data.get("detail"), str) and "\n" in event.data["detail"]:
            out += output_block(event.data["detail"])  # the whole reason, not its first line
        return agent, out

    def _text(self, agent: str, ts: float, text: str) -> str:
        """An agent's words as written, its escape sequences and control characters shown, never obeyed."""
        out: list[str] = []
        for piece in _PIECES.findall(visible(text)):
            if agent not in self.mid_line:
                out.append(f"{stamp(ts)} │ ")
            out.append(piece)
            if piece.endswith("\n"):
                self.mid_line.discard(agent)
            else:
                self.mid_line.add(agent)
        return "".join(out)


def output_block(text: str) -> str:
    """What a command printed, under its result line: each line marked, so a reader tells it from events."""
    lines = visible(text).rstrip("\n").split("\n")
    return "".join(f"{OUTPUT_PREFIX}{line}\n" for line in lines) if lines else ""


def _append(directory: Path, chunks: dict[str, list[str]], cursor: int) -> None:
    """Append each agent's text to its file, then move the cursor (a crash between re-writes a batch, never skips)."""
    directory.mkdir(parents=True, exist_ok=True)
    for agent, parts in chunks.items():
        with open(log_path(directory, agent), "a", encoding="utf-8", errors="replace") as f:
            f.write("".join(parts))
    tmp = directory / f"{CURSOR_FILE}.tmp"
    tmp.write_text(str(cursor))
    os.replace(tmp, directory / CURSOR_FILE)


def read_cursor(directory: Path) -> int:
    try:
        return int((directory / CURSOR_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _ends_mid_line(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) not in (b"\n", b"\r")
    except OSError:
        return False


class AgentLogWriter:
    """`writer = AgentLogWriter.start(store, config)`; `await writer.stop()` when the factory stops."""

    def __init__(self, store: Store, directory: Path, *, interval: float = 0.1) -> None:
        self.store = store
        self.directory = Path(directory)
        self.interval = interval
        self.lines = LineMaker(builders={t.id: t.assignee for t in store.tasks() if t.assignee})
        self.cursor = read_cursor(self.directory)
        self._task: asyncio.Task | None = None
        self._pending: list[Event] = []

    @classmethod
    def start(cls, store: Store, where: FactoryConfig | Path) -> "AgentLogWriter":
        """Write the logs of the factory `where` (its memory/logs/), or into the directory `where`."""
        writer = cls(store, where if isinstance(where, Path) else logs_dir(where))
        writer._task = asyncio.create_task(writer.run(), name="agent-logs")
        return writer

    async def run(self) -> None:
        sub = self.store.subscribe()  # first: what commits while the backlog is read is queued, not lost
        try:
            for agent in known_agents(self.directory):
                if _ends_mid_line(log_path(self.directory, agent)):
                    self.lines.mid_line.add(agent)
            while True:
                page = await self.store.events(after_id=self.cursor, limit=_BACKLOG_PAGE)
                if not page:
                    break
                await self.write(page)
            while True:
                self._pending = [await sub.get()]
                await asyncio.sleep(self.interval)  # let a burst gather: one write per agent per batch
                self._pending.extend(sub.drain())
                await self.write(self._pending)
                self._pending = []
        finally:
            sub.close()

    async def write(self, events: Iterable[Event]) -> None:
        chunks: dict[str, list[str]] = {}
        cursor = self.cursor
        for ev in events:
            if ev.id is not None and ev.id <= self.cursor:
                continue  # already written (the backlog and the live stream overlap)
            made = self.lines.feed(ev)
            if made is not None:
                chunks.setdefault(made[0], []).append(made[1])
            cursor = max(cursor, ev.id or cursor)
        if cursor == self.cursor and not chunks:
            return
        append = asyncio.ensure_future(asyncio.to_thread(_append, self.directory, chunks, cursor))
        try:
            await asyncio.shield(append)
        except asyncio.CancelledError:
            # stopped mid-write: the thread appends anyway, so wait for it and move the cursor, or `stop`
            # would write the same lines again
            await append
            self.cursor = cursor
            raise
        self.cursor = cursor

    async def stop(self) -> None:
        """Write everything the store holds up to now, then end (called as the orchestrator stops).

        Whatever the live loop had not reached yet (events still queued in the store's writer, a batch
        being gathered, a backlog not read because the session was that short) is read back from the
        store, so the log ends where the record does."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        pending, self._pending = self._pending, []
        with contextlib.suppress(Exception):
            if pending:
                await self.write(pending)
            await self.store.flush()  # what agents posted (fire and forget) is committed first
            while True:
                page = await self.store.events(after_id=self.cursor, limit=_BACKLOG_PAGE)
                if not page:
                    break
                before = self.cursor
                await self.write(page)
                if self.cursor == before:
                    break


# --- reading: `cockpit tail` -------------------------------------------------------------------


def last_lines(path: Path, n: int, *, block: int = 65536) -> tuple[bytes, int]:
    """The last `n` lines of `path` (read backwards, so a huge log costs a few blocks) and the file size."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if n <= 0:
            return b"", size
        pos, data = size, b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
        return b"".join(data.splitlines(keepends=True)[-n:]), size


def tail(path: Path, *, lines: int = 20, follow: bool = False, out=None, poll: float = 0.2,
         stop: Callable[[], bool] | None = None) -> int:
    """Print the last `lines` of an agent's log; with `follow`, keep printing what is appended.

    What reaches the terminal is made visible (cockpit.domain.visible) whatever the file holds: the writer
    already wrote it so, but a log from an older cockpit, or one edited by hand, is not trusted either."""
    out = out or sys.stdout.buffer
    while not path.exists():
        if not follow or (stop and stop()):
            raise Refused(f"no log at {path}")
        time.sleep(poll)
    data, pos = last_lines(path, lines)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a chunk may end inside a character
    out.write(visible(decoder.decode(data)).encode("utf-8"))
    out.flush()
    while follow and not (stop and stop()):
        time.sleep(poll)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size < pos:
            pos = 0  # truncated or replaced: start over
        if size > pos:
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read(size - pos)
            pos += len(chunk)
            out.write(visible(decoder.decode(chunk)).encode("utf-8"))
            out.flush()
    return 0


__all__ = ["AgentLogWriter", "LineMaker", "agent_of", "known_agents", "last_lines", "log_path", "logs_dir", "tail"]
