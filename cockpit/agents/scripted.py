"""The scripted model: an offline, Messages-API-compatible server on 127.0.0.1.

With no API key the cockpit still runs: `ScriptedModel` answers requests from scenario files
(see `cockpit.agents.scenarios`), and `ScriptedModelServer` serves it over real HTTP/1.1 so
that `anthropic.AsyncAnthropic(api_key="scripted", base_url=server.base_url)` parses real wire
bytes: JSON messages, SSE streams, tool use, usage, `count_tokens`, error bodies.

The server runs in a daemon thread with its own event loop, so it behaves like a remote
server whatever the caller's loop is doing (the Textual UI owns the main loop).

Extension points kept on purpose:
- `CacheSimulator`: splits a request's input tokens into plain / cache write / cache read.
  `cockpit.agents.prompt_cache.PromptCache` (the default) follows the API's rules;
  `NoCache` reports everything as plain input.
- `ScriptedModelServer._route`: one place where a fault injector (429, 529, timeouts, broken
  streams) can step in before the model answers.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import re
import secrets
import string
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from cockpit.agents.prompt_cache import CacheSimulator, NoCache, PromptCache, PromptUsage
from cockpit.agents.scenarios import Script, ScriptedTurn, load_scenarios

__all__ = [
    "NO_SCRIPT_TEXT",
    "CacheSimulator",
    "NoCache",
    "PromptUsage",
    "ScriptedModel",
    "ScriptedModelServer",
    "conversation_text",
    "find_commit_sha",
    "first_user_text",
    "request_input_tokens",
    "scripted_tokens",
    "stream_events",
    "system_text",
]

log = logging.getLogger(__name__)

NO_SCRIPT_TEXT = "(scripted model: no script for this request)"

_BASE62 = string.ascii_letters + string.digits

# "commit" (also "committed", "Commit SHA:"...), then within 20 characters on the same line a
# standalone lowercase hex token of 7..40 characters.
_SHA_RE = re.compile(
    r"(?i:\bcommit\w*)\W[^\n]{0,20}?(?<![0-9A-Za-z_])([0-9a-f]{7,40})(?![0-9A-Za-z_])"
)
_ROLE_LINE = re.compile(r"^[ \t]*ROLE:[ \t]*(\S+)[ \t]*$", re.MULTILINE)

# Request keys that make up the prompt, in the order the API caches them (tools, system, messages).
_PROMPT_KEYS = ("tools", "system", "messages")


def _random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(length))


# --------------------------------------------------------------------------------------------
# Token estimates


def _char_len(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    return len(json.dumps(obj, ensure_ascii=False))


def scripted_tokens(obj: Any) -> int:
    """The scripted model's own token count, what it reports as usage: a quarter of the characters (of the JSON,
    unless a string), deterministic so a scenario's spend is the same every run."""
    return math.ceil(_char_len(obj) / 4)


def request_input_tokens(body: dict[str, Any]) -> int:
    """The input tokens of a request: tools, system and messages, as one JSON object."""
    return scripted_tokens({key: body[key] for key in _PROMPT_KEYS if key in body})


def _output_tokens(content: list[dict[str, Any]]) -> int:
    chars = 0
    for block in content:
        if block.get("type") == "text":
            chars += len(block.get("text", ""))
        elif block.get("type") == "tool_use":
            chars += _char_len(block.get("input", {}))
    return max(1, math.ceil(chars / 4))


# --------------------------------------------------------------------------------------------
# Reading requests


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    return []


def _text_of(content: Any) -> list[str]:
    """Texts of a content value: a string, text blocks, and tool_result contents."""
    out: list[str] = []
    for block in _blocks(content):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            out.append(block["text"])
        elif block.get("type") == "tool_result":
            out.extend(_text_of(block.get("content")))
    return out


def system_text(system: Any) -> str:
    """The system prompt as text (it may be a string or a list of text blocks)."""
    return "\n".join(_text_of(system))


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def first_user_text(messages: list[dict[str, Any]]) -> str:
    """The text blocks of the first user message, joined by newlines."""
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            texts = [
                b["text"]
                for b in _blocks(content)
                if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            ]
            return "\n".join(texts)
    return ""


def conversation_text(messages: list[dict[str, Any]]) -> str:
    """User-side text of the conversation: user text blocks and tool_result contents."""
    texts: list[str] = []
    for message in messages:
        if message.get("role") == "user":
            texts.extend(_text_of(message.get("content")))
    return "\n".join(texts)


def find_commit_sha(text: str) -> str | None:
    """The last hex token (7..40 lowercase chars) that follows the word "commit", if any."""
    found = None
    for m in _SHA_RE.finditer(text):
        found = m.group(1)
    return found


def _roles(system: str) -> set[str]:
    return set(_ROLE_LINE.findall(system))


def _substitute(value: Any, sha: str | None) -> Any:
    if sha is None:
        return value
    if isinstance(value, str):
        return value.replace("{{sha}}", sha)
    if isinstance(value, list):
        return [_substitute(v, sha) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, sha) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# The model


class ScriptedModel:
    """Answers Messages API request bodies from scripts; the same answer feeds both wire modes."""

    def __init__(
        self,
        scripts: list[Script],
        *,
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        cache: CacheSimulator | None = None,
    ) -> None:
        self.scripts = list(scripts)
        self.latency_s = latency_s
        self.chunk_delay_s = chunk_delay_s
        self.cache: CacheSimulator = PromptCache() if cache is None else cache

    @classmethod
    def from_paths(cls, paths: Iterable[Path], **kwargs: Any) -> "ScriptedModel":
        return cls(load_scenarios([Path(p) for p in paths]), **kwargs)

    def select(self, body: dict[str, Any]) -> tuple[Script | None, ScriptedTurn | None]:
        """The first script whose role and match/exclude fit, and its turn for this request."""
        messages = _messages(body)
        roles = _roles(system_text(body.get("system")))
        first = first_user_text(messages)
        turn_index = sum(1 for m in messages if m.get("role") == "assistant")
        for script in self.scripts:
            if script.role is not None and script.role not in roles:
                continue
            if not all(s in first for s in script.match):
                continue
            if any(s in first for s in script.exclude):
                continue
            if script.system_match and not all(s in system_text(body.get("system")) for s in script.system_match):
                continue
            if turn_index < len(script.turns):
                return script, script.turns[turn_index]
            log.warning(
                "scripted model: %s has %d turns, request is turn %d",
                script.label, len(script.turns), turn_index,
            )
            return script, None
        log.warning(
            "scripted model: no script for roles=%s first user message=%r",
            sorted(roles), first[:120],
        )
        return None, None

    def answer(self, body: dict[str, Any]) -> tuple[dict[str, Any], Script | None]:
        """The Message JSON for `body`, and the script that produced it (None: the fallback)."""
        script, turn = self.select(body)
        content: list[dict[str, Any]] = []
        if turn is None:
            content.append({"type": "text", "text": NO_SCRIPT_TEXT})
            stop_reason = "end_turn"
        else:
            sha = find_commit_sha(conversation_text(_messages(body)))
            if turn.text:
                content.append({"type": "text", "text": _substitute(turn.text, sha)})
            for tool in turn.tool_use:
                content.append(
                    {
                        "type": "tool_use",
                        "id": _random_id("toolu_"),
                        "name": tool.name,
                        "input": _substitute(copy.deepcopy(tool.input), sha),
                    }
                )
            stop_reason = turn.stop_reason or ("tool_use" if turn.tool_use else "end_turn")

        prompt = self.cache.account(body, request_input_tokens(body))
        usage: dict[str, Any] = {
            "input_tokens": prompt.input_tokens,
            "output_tokens": _output_tokens(content),
            "cache_creation_input_tokens": prompt.cache_creation_input_tokens,
            "cache_read_input_tokens": prompt.cache_read_input_tokens,
            "service_tier": "standard",
        }
        if prompt.cache_creation_input_tokens:
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": prompt.cache_creation_input_tokens - prompt.cache_creation_1h_input_tokens,
                "ephemeral_1h_input_tokens": prompt.cache_creation_1h_input_tokens,
            }
        if turn is not None and turn.usage is not None:
            usage.update(turn.usage.model_dump(exclude_none=True))
            if turn.usage.cache_creation_input_tokens is not None:
                usage.pop("cache_creation", None)  # the script says the total; the split no longer holds

        message = {
            "id": _random_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or "scripted",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        return message, script if turn is not None else None

    def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        """The full Message JSON answering a request body."""
        return self.answer(body)[0]

    def count_tokens(self, body: dict[str, Any]) -> int:
        return request_input_tokens(body)


def _chunks(text: str, pieces: int = 3) -> list[str]:
    if len(text) <= 1:
        return [text]
    size = math.ceil(len(text) / pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events (name, data) that stream `message`, as the real API sends them."""
    usage = message["usage"]
    start_usage = dict(usage, output_tokens=1)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {"type": "message_start", "message": dict(message, content=[], stop_reason=None, usage=start_usage)},
        )
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in _chunks(block["text"])]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"], ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": c} for c in _chunks(raw)]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        for delta in deltas:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if not message["content"]:
        events.append(("ping", {"type": "ping"}))
    final_usage = {k: usage[k] for k in usage if k not in ("service_tier", "cache_creation")}
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message.get("stop_sequence")},
                "usage": final_usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


# --------------------------------------------------------------------------------------------
# The HTTP server

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_MAX_BODY = 64 * 1024 * 1024


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _header_value(value: str) -> str:
    return value.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")


@dataclass
class _Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class ScriptedModelServer:
    """Serves a `ScriptedModel` over HTTP/1.1 (keep-alive, SSE) from a daemon thread."""

    def __init__(self, model: ScriptedModel, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self.connections_accepted = 0  # TCP connections served so far (keep-alive shows as 1)
        self._requests_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._stopped = False
        self.faults: Any = None  # a cockpit.agents.faults.FaultInjector, set by tests to inject failures

    # ---- lifecycle

    def start(self) -> str:
        """Start serving in a daemon thread; return the base URL (http://127.0.0.1:PORT)."""
        if self._thread is not None:
            if self._stopped:
                raise RuntimeError("a stopped ScriptedModelServer cannot be restarted")
            return self.base_url
        self._thread = threading.Thread(target=self._run, name="scripted-model", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._stopped = True
            raise RuntimeError(f"scripted model server failed to start: {self._startup_error}") from self._startup_error
        self.base_url = f"http://{self.host}:{self.port}"
        return self.base_url

    def stop(self) -> None:
        """Stop serving and join the thread; calling it again does nothing."""
        if self._stopped or self._thread is None:
            self._stopped = True
            return
        self._stopped = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # the loop closed in between
                pass
        self._thread.join(timeout=10)

    def __enter__(self) -> "ScriptedModelServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle_connection, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    # ---- connections

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_accepted += 1
        try:
            while True:
                try:
                    request = await self._read_request(reader, writer)
                except _BadRequest as exc:
                    await self._send_json(
                        writer, exc.status, _error_body("invalid_request_error", exc.message), keep_alive=False
                    )
                    break
                if request is None:
                    break
                keep_alive = request.keep_alive
                await self._route(request, writer, keep_alive)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - never let one connection take the server down
            log.exception("scripted model: connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError, OSError):
                pass

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection between requests
        except asyncio.LimitOverrunError as exc:
            raise _BadRequest(431, "request headers too large") from exc
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _BadRequest(400, f"malformed request line: {lines[0][:100]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(400, f"malformed header line: {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()

        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()

        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError as exc:
                raise _BadRequest(400, "invalid Content-Length") from exc
            if length < 0:
                raise _BadRequest(400, "invalid Content-Length")
            if length > _MAX_BODY:
                raise _BadRequest(413, "request body too large")
            body = await reader.readexactly(length) if length else b""
        return _Request(method.upper(), target.split("?", 1)[0], version, headers, body)

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequest(400, "invalid chunk size") from exc
            if size == 0:
                # Trailers, if any, end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
            if len(body) > _MAX_BODY:
                raise _BadRequest(413, "request body too large")

    # ---- routing

    async def _route(self, request: _Request, writer: asyncio.StreamWriter, keep_alive: bool) -> None:
        """Answer one request. A fault injector can wrap or replace this later."""
        path = request.path.rstrip("/")
        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            await self._send_json(
                writer,
                404,
                _error_body("not_found_error", f"{request.method} {request.path}: no such endpoint"),
                keep_alive,
            )
            return
        if request.method != "POST":
            await self._send_json(
                writer,
                405,
                _error_body("invalid_request_error", f"{request.method} is not allowed on {path}; use POST"),
                keep_alive,
            )
            return
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            await self._send_json(
                writer, 400, _error_body("invalid_request_error", f"request body is not valid JSON: {exc}"), keep_alive
            )
            return
        problem = _validate(body, needs_max_tokens=path == "/v1/messages")
        if problem is not None:
            await self._send_json(writer, 400, _error_body("invalid_request_error", problem), keep_alive)
            return

        try:
            if path == "/v1/messages/count_tokens":
                await self._send_json(writer, 200, {"input_tokens": self.model.count_tokens(body)}, keep_alive)
                return
            with self._requests_lock:
                self.requests.append(body)
            message, script = self.model.answer(body)
        except Exception as exc:  # noqa: BLE001 - a scripting bug answers 500, the server lives on
            log.exception("scripted model: failed to answer")
            await self._send_json(writer, 500, _error_body("api_error", f"scripted model failed: {exc}"), keep_alive)
            return

        if self.faults is not None and await self.faults.intercept(self, request.headers, body, message, writer,
                                                                   keep_alive):
            return
        extra = {"x-scripted-script": _header_value(script.label if script else "(none)")}
        if self.model.latency_s > 0:
            await asyncio.sleep(self.model.latency_s)
        if body.get("stream"):
            await self._send_stream(writer, stream_events(message), keep_alive, extra)
        else:
            await self._send_json(writer, 200, message, keep_alive, extra)

    # ---- writing responses

    @staticmethod
    def _head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        headers = {
            "request-id": _random_id("req_"),
            **headers,
            "connection": "keep-alive" if keep_alive else "close",
        }
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: dict[str, Any],
        keep_alive: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"content-type": "application/json", "content-length": str(len(data)), **(extra or {})}
        writer.write(self._head(status, headers, keep_alive) + data)
        await writer.drain()

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        events: list[tuple[str, dict[str, Any]]],
        keep_alive: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
            **(extra or {}),
        }
        writer.write(self._head(200, headers, keep_alive))
        delay = self.model.chunk_delay_s
        for i, (name, data) in enumerate(events):
            if delay > 0 and i > 0:
                await asyncio.sleep(delay)
            payload = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")
            writer.write(f"{len(payload):x}\r\n".encode("ascii") + payload + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _validate(body: Any, *, needs_max_tokens: bool) -> str | None:
    """A short reason if the body is not a plausible Messages request, else None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    if needs_max_tokens and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    return None
