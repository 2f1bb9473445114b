"""Fault injection for the scripted model server: the failures the real API has, on command.

Tests queue faults on a `FaultInjector` attached to a `ScriptedModelServer`
(`server.faults = FaultInjector()`); each Messages request takes the next fault
from the queue, so `injector.push(Fault(RATE_LIMIT), Fault(OVERLOADED))` makes
the next two requests fail and the third one answer normally. The model's answer
is still computed from the scenario (it is stateless), so a retried request gets
the same turn a clean one would.

Kinds, and what the client sees:
- rate_limit: HTTP 429 with `retry-after` (the SDK waits that long, then retries)
- overloaded: HTTP 529 `overloaded_error`
- server_error: HTTP 500 `api_error`
- reset: the TCP connection is reset before any response byte
- stall: the stream starts, then goes silent (the client's read timeout fires)
- truncate: the stream starts, then the connection closes mid-body
- early_end: the body ends cleanly but before `message_stop` (a proxy cutting short)
- stream_error: an SSE `error` event mid-stream (`overloaded_error`, as the API sends)
- bad_tool_json: a tool_use block whose `input_json_delta` is not valid JSON
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections import Counter, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .scripted import stream_events

if TYPE_CHECKING:  # pragma: no cover
    from .scripted import ScriptedModelServer

__all__ = ["Fault", "FaultInjector", "FaultKind"]


class FaultKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    RESET = "reset"
    STALL = "stall"
    TRUNCATE = "truncate"
    EARLY_END = "early_end"
    STREAM_ERROR = "stream_error"
    BAD_TOOL_JSON = "bad_tool_json"


_STATUS = {
    FaultKind.RATE_LIMIT: (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    FaultKind.OVERLOADED: (529, "overloaded_error", "Overloaded"),
    FaultKind.SERVER_ERROR: (500, "api_error", "Internal server error"),
}
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 529: "Overloaded"}
_MID_STREAM = {FaultKind.STALL, FaultKind.TRUNCATE, FaultKind.EARLY_END, FaultKind.STREAM_ERROR}


@dataclass(frozen=True)
class Fault:
    """One failure for one request. `after_events`: SSE events sent before a mid-stream fault
    (message_start is always among them, so the client has seen the input usage)."""

    kind: FaultKind
    retry_after_s: float = 0.05
    after_events: int = 4
    stall_s: float = 30.0


class FaultInjector:
    """A queue of faults, consumed one per Messages request; thread-safe (tests push, the server takes)."""

    def __init__(self) -> None:
        self._queue: deque[Fault | None] = deque()
        self._lock = threading.Lock()
        self.applied: Counter[str] = Counter()  # kind -> how many requests it hit
        self.requests_seen = 0
        self.api_keys_seen: set[str] = set()  # keys sent (x-api-key or bearer), to prove which key reached us

    def push(self, *faults: Fault | FaultKind | str | None) -> None:
        """Queue faults for the next requests, in order; None lets one request through untouched."""
        with self._lock:
            for f in faults:
                self._queue.append(f if f is None or isinstance(f, Fault) else Fault(FaultKind(f)))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _take(self, headers: dict[str, str]) -> Fault | None:
        with self._lock:
            self.requests_seen += 1
            if "x-api-key" in headers:
                self.api_keys_seen.add(headers["x-api-key"])
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):  # the SDK's newer way of sending the same key
                self.api_keys_seen.add(auth[7:].strip())
            fault = self._queue.popleft() if self._queue else None
            if fault is not None:
                self.applied[fault.kind.value] += 1
            return fault

    async def intercept(self, server: ScriptedModelServer, headers: dict[str, str], body: dict[str, Any],
                        message: dict[str, Any], writer: asyncio.StreamWriter, keep_alive: bool) -> bool:
        """Apply the next fault to this request; True when the fault answered it (the server must not)."""
        fault = self._take(headers)
        if fault is None:
            return False
        kind = fault.kind
        if kind in _STATUS:
            status, etype, text = _STATUS[kind]
            payload = json.dumps({"type": "error", "error": {"type": etype, "message": text}}).encode()
            head = {"content-type": "application/json", "content-length": str(len(payload)), "x-should-retry": "true"}
            if kind == FaultKind.RATE_LIMIT:
                head["retry-after"] = f"{fault.retry_after_s:g}"
            lines = [f"HTTP/1.1 {status} {_REASONS[status]}", *(f"{k}: {v}" for k, v in head.items()),
                     f"connection: {'keep-alive' if keep_alive else 'close'}"]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
            return True
        if kind == FaultKind.RESET:
            _reset(writer)
            raise ConnectionResetError("fault injected: connection reset")

        if kind == FaultKind.BAD_TOOL_JSON:
            message = _with_tool_use(message)
        events = stream_events(message)
        if not body.get("stream"):
            if kind == FaultKind.BAD_TOOL_JSON:  # a JSON body cannot carry a broken fragment: send broken JSON
                data = json.dumps(message).encode()[:-20]
                await _write_raw(writer, 200, "application/json", data, keep_alive)
                return True
            _reset(writer)  # a non-streaming request has no "mid-stream": the closest is a cut body
            raise ConnectionResetError("fault injected: body cut")
        n = max(1, fault.after_events) if kind in _MID_STREAM else len(events)
        writer.write(server._head(200, {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                                        "transfer-encoding": "chunked"}, keep_alive))
        for name, data in events[:n]:
            if kind == FaultKind.BAD_TOOL_JSON and name == "content_block_delta" and \
                    data["delta"].get("type") == "input_json_delta":
                data = {**data, "delta": {"type": "input_json_delta", "partial_json": '{"path": nope, }'}}
            _chunk(writer, name, data)
            await writer.drain()
        if kind == FaultKind.STALL:
            await asyncio.sleep(fault.stall_s)  # the client gives up first; the server's stop cancels this
            _reset(writer)
            raise ConnectionResetError("fault injected: stalled")
        if kind == FaultKind.TRUNCATE:
            _reset(writer)
            raise ConnectionResetError("fault injected: stream truncated")
        if kind == FaultKind.STREAM_ERROR:
            _chunk(writer, "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def _chunk(writer: asyncio.StreamWriter, name: str, data: dict[str, Any]) -> None:
    payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
    writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")


async def _write_raw(writer: asyncio.StreamWriter, status: int, ctype: str, data: bytes, keep_alive: bool) -> None:
    head = (f"HTTP/1.1 {status} OK\r\ncontent-type: {ctype}\r\ncontent-length: {len(data)}\r\n"
            f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    writer.write(head.encode("latin-1") + data)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed peer or a middlebox does, not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _with_tool_use(message: dict[str, Any]) -> dict[str, Any]:
    """Make sure the answer has a tool_use block whose input the fault can break."""
    if any(b["type"] == "tool_use" for b in message["content"]):
        return message
    block = {"type": "tool_use", "id": "toolu_fault000000000000000000", "name": "read_file", "input": {"path": "x"}}
    return {**message, "content": [*message["content"], block], "stop_reason": "tool_use"}
