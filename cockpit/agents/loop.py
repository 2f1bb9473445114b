"""The agent loop: stream a model turn, run the tools it asked for, repeat.

Runs on `anthropic.AsyncAnthropic`, whatever the transport (the real API or the
scripted model on 127.0.0.1). Every model call is preceded by a reservation in
the ledger and followed by its settlement from the usage the stream reported.
Text deltas and tool calls become events as they happen, so they stream to the
screen; the text is coalesced into chunks, never one event per token.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic

try:  # the transport the installed SDK uses: its errors surface raw from a stream that breaks
    import httpx2 as _http
except ImportError:  # pragma: no cover - SDKs before the httpx2 switch
    import httpx as _http  # type: ignore[no-redef]

from ..domain.events import Event, Kind
from ..domain.prices import PriceTable, Usage
from ..host.disk_reserve import DiskLow
from ..store import Store
from .caching import CacheTTL, with_cache_breakpoints

_FLUSH_CHARS = 240
_FLUSH_SECONDS = 0.15


class ModelUnavailable(Exception):
    """The model could not be reached after the SDK's retries; the task should block."""


class IncompleteStream(Exception):
    """The response stream ended (cleanly, as far as HTTP knows) before message_stop."""


class BrokenStream(Exception):
    """The response stream broke after its first event, whatever the SDK wrapped the failure in.

    SDK releases differ: some let the transport's error out raw, newer ones wrap it in
    APITimeoutError / APIConnectionError. Either way the SDK will not retry a stream that
    already began, so we do; what was received is paid."""


@dataclass
class ToolOutcome:
    text: str
    is_error: bool = False
    ends_session: bool = False


class Toolbox(Protocol):
    """What an agent may do: its tool set *is* its permission."""

    def specs(self) -> list[dict[str, Any]]: ...

    def names(self) -> set[str]: ...

    async def call(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome: ...


@dataclass
class SessionResult:
    reason: str  # "ended" (model stopped), "terminal" (a session-ending tool succeeded), "max_turns"
    final_text: str = ""
    turns: int = 0
    terminal_tool: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)


def reservation_tokens(obj: Any) -> int:
    """A request's input tokens for the budget reservation, over-estimated on purpose (about 3 characters a token
    of its JSON, plus 16) so the worst case reserved before the call is never below what the call costs."""
    return len(json.dumps(obj, default=str)) // 3 + 16


class AgentSession:
    """One agent working one task until it stops, ends its session with a tool, or runs out of turns."""

    stop_at_terminal = True  # a test switches it off to show what tools run after submit would do

    def __init__(
        self,
        *,
        agent: str,
        role: str,
        product: str,
        task_id: str | None,
        client: anthropic.AsyncAnthropic,
        model: str,
        max_tokens: int,
        system: str,
        toolbox: Toolbox,
        store: Store,
        prices: PriceTable,
        max_turns: int = 40,
        rules_hash: str = "",
        before_call: Callable[[float], Awaitable[None]] | None = None,
        refresh: Callable[[], Awaitable[tuple[str, dict[str, Any]]]] | None = None,
        cache_ttl: CacheTTL = "5m",
        stream_retries: int = 2,
        retry_delay_s: float = 0.5,
        simulated: bool = False,
    ):
        """`simulated`: the client is the offline scripted model; its calls' spend is simulated, kept apart."""
        self.simulated = simulated
        self.agent = agent
        self.role = role
        self.product = product
        self.task_id = task_id
        self.client = client
        self.model = model
        self.max_tokens = max_tokens
        self.system = system
        self.toolbox = toolbox
        self.store = store
        self.prices = prices
        self.max_turns = max_turns
        self.rules_hash = rules_hash
        self.before_call = before_call
        # before each call: (system prompt, facts for its model.call event), so a rule edited
        # mid-session is in force from the next call and the call records what it was given
        self.refresh = refresh
        self.call_facts: dict[str, Any] = {}
        self.cache_ttl = cache_ttl  # of the stable prefix (tools, rules); the conversation uses 5m
        self.stream_retries = stream_retries  # our retries for a stream that breaks; HTTP errors are the SDK's
        self.retry_delay_s = retry_delay_s

    def _event(self, kind: str, **data: Any) -> Event:
        return Event(kind=kind, actor=self.agent, product=self.product, task_id=self.task_id,
                     data={"agent": self.agent, **data})

    async def run(self, first_message: str) -> SessionResult:
        messages: list[dict[str, Any]] = [{"role": "user", "content": first_message}]
        self.store.post(self._event(Kind.AGENT_STARTED, role=self.role, model=self.model))
        last_text = ""
        for turn in range(1, self.max_turns + 1):
            msg = await self._call_with_retries(messages)
            content = [b.model_dump(exclude_none=True, mode="json") for b in msg.content]
            messages.append({"role": "assistant", "content": content})
            texts = [b.text for b in msg.content if b.type == "text"]
            if texts:
                last_text = "\n".join(texts)
            tool_uses = [b for b in msg.content if b.type == "tool_use"]
            if not tool_uses:
                self.store.post(self._event(Kind.AGENT_FINISHED, reason="ended", turns=turn))
                return SessionResult("ended", last_text, turn, messages=messages)
            results: list[dict[str, Any]] = []
            terminal: str | None = None
            for tu in tool_uses:
                tool_input = tu.input if isinstance(tu.input, dict) else {}
                self.store.post(self._event(Kind.AGENT_TOOL, name=tu.name, input=_clip_input(tool_input)))
                if terminal and self.stop_at_terminal:
                    # the session ended at submit/approve: nothing after it runs (it would change what the next
                    # stage is handed, after the check that handed it over: adversary C-02)
                    outcome = ToolOutcome(f"not run: the session ended at {terminal}", is_error=True)
                else:
                    outcome = await self._call_tool(tu.name, tool_input)
                self.store.post(self._event(Kind.AGENT_TOOL_RESULT, name=tu.name, is_error=outcome.is_error,
                                            summary=_summary(outcome.text), output=clip_output(outcome.text)))
                results.append({"type": "tool_result", "tool_use_id": tu.id, "content": outcome.text,
                                "is_error": outcome.is_error})
                if outcome.ends_session and not outcome.is_error:
                    terminal = tu.name
            messages.append({"role": "user", "content": results})
            if terminal:
                self.store.post(self._event(Kind.AGENT_FINISHED, reason=f"called {terminal}", turns=turn))
                return SessionResult("terminal", last_text, turn, terminal, messages)
        self.store.post(self._event(Kind.AGENT_FINISHED, reason="max_turns", turns=self.max_turns))
        return SessionResult("max_turns", last_text, self.max_turns, messages=messages)

    async def _call_tool(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        if name not in self.toolbox.names():
            reason = f"tool '{name}' is not available to {self.role} {self.agent}"
            await self.store.append(Event(kind=Kind.REFUSED, actor=self.agent, product=self.product,
                                          task_id=self.task_id, data={"kind": f"tool:{name}", "reason": reason}))
            return ToolOutcome(reason, is_error=True)
        try:
            return await self.toolbox.call(name, tool_input)
        except DiskLow:
            raise  # not the agent's to handle: the task waits for the human, who frees the disk (C-10)
        except Exception as e:  # a tool bug must not kill the session: the model sees it
            return ToolOutcome(f"tool {name} failed: {type(e).__name__}: {e}", is_error=True)

    async def _call_with_retries(self, messages: list[dict[str, Any]]) -> Any:
        """`_call`, again with backoff when the stream broke after it started.

        The SDK already retried what fails before a response (429 with retry-after, 5xx,
        529, connection errors; `max_retries`) and raised ModelUnavailable: that is final.
        It cannot retry a stream that breaks midway (a reset, a stall, a truncated or
        incomplete body, an SSE error event, tool input that is not JSON): we do, each
        attempt reserved and settled on its own. The text already streamed stays in the
        transcript, followed by a model.retry event; nothing is run from a broken answer.
        A final failure is recorded (model.unavailable: the store names its outage, which makes one
        notice per outage) before it is raised."""
        try:
            return await self._call_retrying(messages)
        except ModelUnavailable as e:
            await self.store.append(self._event(Kind.MODEL_UNAVAILABLE, error=str(e)[:500]))
            raise

    async def _call_retrying(self, messages: list[dict[str, Any]]) -> Any:
        for attempt in range(1, self.stream_retries + 2):
            try:
                return await self._call(messages)
            except Exception as e:
                why = _broken_stream(e)
                if why is None:
                    raise
                if attempt > self.stream_retries:
                    raise ModelUnavailable(f"the response stream broke {attempt} times; last: {why}") from e
                delay = min(self.retry_delay_s * 2 ** (attempt - 1), 8.0) * (1 - 0.25 * random.random())
                self.store.post(self._event(Kind.MODEL_RETRY, attempt=attempt, of=self.stream_retries + 1,
                                            reason=why[:500], delay_s=round(delay, 3)))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _call(self, messages: list[dict[str, Any]]) -> Any:
        if self.refresh is not None:
            self.system, self.call_facts = await self.refresh()
            self.rules_hash = self.call_facts.get("rules_hash", self.rules_hash)
        request = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            **with_cache_breakpoints(tools=self.toolbox.specs(), system=self.system, messages=messages,
                                     prefix_ttl=self.cache_ttl),
        }
        call_id = f"call_{uuid.uuid4().hex[:16]}"
        reserve_usd = self.prices.reservation(self.model, reservation_tokens(request), self.max_tokens)
        if self.before_call is not None:
            await self.before_call(reserve_usd)
        # raises BudgetExceeded when a budget would pass its limit: then the call is never made
        await self.store.reserve(call_id=call_id, task_id=self.task_id, product=self.product, actor=self.agent,
                                 model=self.model, usd=reserve_usd, simulated=self.simulated)
        usage = Usage()
        started = time.monotonic()
        buf: list[str] = []
        last_flush = time.monotonic()
        received = 0  # characters of text and tool input streamed: what a broken stream still cost
        events = 0  # stream events seen: after the first, a failure is a broken stream, ours to retry

        def flush() -> None:
            nonlocal last_flush
            if buf:
                self.store.post(self._event(Kind.AGENT_TEXT, text="".join(buf)))
                buf.clear()
            last_flush = time.monotonic()

        try:
            async with self.client.messages.stream(**request) as stream:
                async for ev in stream:
                    events += 1
                    if ev.type == "message_start":
                        usage = _usage_of(ev.message.usage, usage)
                    elif ev.type == "message_delta" and ev.usage is not None:
                        usage = _usage_of(ev.usage, usage)
                    elif ev.type == "input_json":
                        received += len(ev.partial_json)
                    elif ev.type == "text":
                        received += len(ev.text)
                        buf.append(ev.text)
                        if "\n" in ev.text or sum(map(len, buf)) >= _FLUSH_CHARS or \
                                time.monotonic() - last_flush >= _FLUSH_SECONDS:
                            flush()
                msg = await stream.get_final_message()
                if msg.stop_reason is None:
                    raise IncompleteStream("the stream ended before message_stop")
            flush()
            usage = _usage_of(msg.usage, usage)
        except anthropic.APIError as e:
            flush()
            await self._settle(call_id, _received_usage(usage, received, self.max_tokens), complete=False)
            if events and isinstance(e, anthropic.APIConnectionError):
                raise BrokenStream(f"{type(e).__name__} while streaming: {e}") from e
            raise ModelUnavailable(f"{type(e).__name__}: {e}") from e
        except BaseException:
            flush()
            await self._settle(call_id, _received_usage(usage, received, self.max_tokens), complete=False)
            raise
        usd = await self._settle(call_id, usage, complete=True)
        self.store.post(self._event(Kind.MODEL_CALL, call_id=call_id, model=self.model, usd=usd,
                                    **({"simulated": True} if self.simulated else {}),
                                    usage=usage.model_dump(), stop_reason=msg.stop_reason,
                                    **{**self.call_facts, "rules_hash": self.rules_hash},
                                    seconds=round(time.monotonic() - started, 3)))
        return msg

    async def _settle(self, call_id: str, usage: Usage, *, complete: bool) -> float:
        usd = self.prices.cost(self.model, usage)
        await self.store.settle(call_id=call_id, task_id=self.task_id, product=self.product, usd=usd,
                                usage=usage.model_dump(), complete=complete)
        return usd


def _broken_stream(e: BaseException) -> str | None:
    """Why `e` means the response stream broke after it began (worth our retry), or None."""
    if isinstance(e, BrokenStream):
        return str(e)
    cause = e.__cause__ if isinstance(e, ModelUnavailable) else e
    if isinstance(cause, anthropic.APIStatusError):
        # an SSE `error` event arrives on a 200 response; a real HTTP error was the SDK's to retry
        return f"error event in the stream: {cause.message}" if cause.status_code == 200 else None
    if isinstance(e, ModelUnavailable) or isinstance(cause, anthropic.APIError):
        return None
    if isinstance(cause, IncompleteStream):
        return str(cause)
    if isinstance(cause, _http.TransportError):
        return f"{type(cause).__name__} while streaming: {cause}".rstrip(": ")
    if isinstance(cause, ValueError) and _raised_in_sdk_stream(cause):
        return f"invalid tool input from the model: {str(cause)[:300]}"
    return None


def _raised_in_sdk_stream(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith("anthropic.lib.streaming"):
            return True
        tb = tb.tb_next
    return False


def _received_usage(usage: Usage, received_chars: int, max_tokens: int) -> Usage:
    """A broken stream's usage: the counts it reported, output at least what arrived (~3 chars a token)."""
    seen = min(-(-received_chars // 3), max_tokens)
    return usage.model_copy(update={"output_tokens": max(usage.output_tokens, seen)})


def _usage_of(u: Any, prev: Usage) -> Usage:
    """Merge a usage object from the stream; message_delta usage is cumulative, so take the latest."""
    if u is None:
        return prev
    data = prev.model_dump()
    for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        v = getattr(u, key, None)
        if v is not None:
            data[key] = int(v)
    cc = getattr(u, "cache_creation", None)
    if cc is not None and getattr(cc, "ephemeral_1h_input_tokens", None) is not None:
        data["cache_creation_1h_input_tokens"] = int(cc.ephemeral_1h_input_tokens)
    return Usage(**data)


def _summary(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:limit]


LOG_OUTPUT_CHARS = 16000


def clip_output(text: str, limit: int = LOG_OUTPUT_CHARS) -> str:
    """The tool's answer as the model got it (already capped by [limits] output_cap_bytes), for the agent's
    log: kept whole up to `limit` characters, else its head and tail around a line that says what was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... ({len(text) - 2 * half} characters not logged; the model got them) ...\n{text[-half:]}"


def _clip_input(d: dict[str, Any], limit: int = 400) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, str) and len(v) > limit:
            out[k] = v[:limit] + f"... ({len(v)} chars)"
        else:
            out[k] = v
    return out
