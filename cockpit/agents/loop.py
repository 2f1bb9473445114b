"""The agent loop: stream a model turn, run the tools it asked for, repeat.

Runs on `anthropic.AsyncAnthropic`, whatever the transport (the real API or the
scripted model on 127.0.0.1). Every model call is preceded by a reservation in
the ledger and followed by its settlement from the usage the stream reported.
Text deltas and tool calls become events as they happen, so they stream to the
screen; the text is coalesced into chunks, never one event per token.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic

from ..domain.events import Event, Kind
from ..domain.prices import PriceTable, Usage
from ..store import Store

_FLUSH_CHARS = 240
_FLUSH_SECONDS = 0.15


class ModelUnavailable(Exception):
    """The model could not be reached after the SDK's retries; the task should block."""


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


def estimate_tokens(obj: Any) -> int:
    """A deliberate over-estimate for reservations: about 3 characters per token."""
    return len(json.dumps(obj, default=str)) // 3 + 16


class AgentSession:
    """One agent working one task until it stops, ends its session with a tool, or runs out of turns."""

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
    ):
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

    def _event(self, kind: str, **data: Any) -> Event:
        return Event(kind=kind, actor=self.agent, product=self.product, task_id=self.task_id,
                     data={"agent": self.agent, **data})

    async def run(self, first_message: str) -> SessionResult:
        messages: list[dict[str, Any]] = [{"role": "user", "content": first_message}]
        self.store.post(self._event(Kind.AGENT_STARTED, role=self.role, model=self.model))
        last_text = ""
        for turn in range(1, self.max_turns + 1):
            msg = await self._call(messages)
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
                outcome = await self._call_tool(tu.name, tool_input)
                self.store.post(self._event(Kind.AGENT_TOOL_RESULT, name=tu.name, is_error=outcome.is_error,
                                            summary=_summary(outcome.text)))
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
        except Exception as e:  # a tool bug must not kill the session: the model sees it
            return ToolOutcome(f"tool {name} failed: {type(e).__name__}: {e}", is_error=True)

    async def _call(self, messages: list[dict[str, Any]]) -> Any:
        request = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": [{"type": "text", "text": self.system}],
            "messages": messages,
            "tools": self.toolbox.specs(),
        }
        call_id = f"call_{uuid.uuid4().hex[:16]}"
        reserve_usd = self.prices.reservation(self.model, estimate_tokens(request), self.max_tokens)
        if self.before_call is not None:
            await self.before_call(reserve_usd)
        await self.store.reserve(call_id=call_id, task_id=self.task_id, product=self.product, actor=self.agent,
                                 model=self.model, usd=reserve_usd)
        usage = Usage()
        started = time.monotonic()
        buf: list[str] = []
        last_flush = time.monotonic()

        def flush() -> None:
            nonlocal last_flush
            if buf:
                self.store.post(self._event(Kind.AGENT_TEXT, text="".join(buf)))
                buf.clear()
            last_flush = time.monotonic()

        try:
            async with self.client.messages.stream(**request) as stream:
                async for ev in stream:
                    if ev.type == "message_start":
                        usage = _usage_of(ev.message.usage, usage)
                    elif ev.type == "message_delta" and ev.usage is not None:
                        usage = _usage_of(ev.usage, usage)
                    elif ev.type == "text":
                        buf.append(ev.text)
                        if "\n" in ev.text or sum(map(len, buf)) >= _FLUSH_CHARS or \
                                time.monotonic() - last_flush >= _FLUSH_SECONDS:
                            flush()
                msg = await stream.get_final_message()
            flush()
            usage = _usage_of(msg.usage, usage)
        except anthropic.APIError as e:
            flush()
            await self._settle(call_id, usage, complete=False)
            raise ModelUnavailable(f"{type(e).__name__}: {e}") from e
        except BaseException:
            flush()
            await self._settle(call_id, usage, complete=False)
            raise
        usd = await self._settle(call_id, usage, complete=True)
        self.store.post(self._event(Kind.MODEL_CALL, call_id=call_id, model=self.model, usd=usd,
                                    usage=usage.model_dump(), stop_reason=msg.stop_reason,
                                    rules_hash=self.rules_hash, seconds=round(time.monotonic() - started, 3)))
        return msg

    async def _settle(self, call_id: str, usage: Usage, *, complete: bool) -> float:
        usd = self.prices.cost(self.model, usage)
        await self.store.settle(call_id=call_id, task_id=self.task_id, product=self.product, usd=usd,
                                usage=usage.model_dump(), complete=complete)
        return usd


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


def _clip_input(d: dict[str, Any], limit: int = 400) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, str) and len(v) > limit:
            out[k] = v[:limit] + f"... ({len(v)} chars)"
        else:
            out[k] = v
    return out
