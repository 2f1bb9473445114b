"""The scripted model's prompt cache: accounts cache writes and reads the way the API does.

So that the effect of `cache_control` breakpoints can be measured offline, a
request's input tokens are split like the API splits them:

- the prompt is a sequence of blocks in cache order: each tool, each system
  block, then each content block of each message (a string content is one block);
- a breakpoint (a block with `cache_control`) caches the prefix that ends with
  it, if that prefix has at least `min_tokens` tokens, for its TTL (5 minutes,
  or `"ttl": "1h"`); a read refreshes the TTL;
- a request reads the longest prefix cached within its TTL, trying every block
  boundary up to `lookback_blocks` blocks before each of its breakpoints;
- what lies between the read prefix and the last breakpoint is written (cache
  creation, split by TTL); everything after the last breakpoint is plain input.

Prefixes are identified by a hash chain over the model and the blocks without
their `cache_control` (markers do not change what is cached).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True)
class PromptUsage:
    """How a request's input tokens split (the API reports the three counts separately)."""

    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0  # the part of cache_creation written with the 1-hour TTL


class CacheSimulator(Protocol):
    """Decides which part of a request's prompt was written to / read from the prompt cache."""

    def account(self, body: dict[str, Any], total_input_tokens: int) -> PromptUsage: ...


class NoCache:
    """No prompt caching: every input token is a plain input token."""

    def account(self, body: dict[str, Any], total_input_tokens: int) -> PromptUsage:
        return PromptUsage(input_tokens=total_input_tokens)


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def prompt_blocks(body: dict[str, Any]) -> list[tuple[Any, dict[str, Any] | None]]:
    """(block without cache_control, its cache_control or None), in the API's cache order."""
    out: list[tuple[Any, dict[str, Any] | None]] = []

    def add(block: Any, role: str | None = None) -> None:
        mark = None
        if isinstance(block, dict) and "cache_control" in block:
            block = dict(block)
            mark = block.pop("cache_control")
        out.append(({"role": role, "block": block} if role else block, mark if isinstance(mark, dict) else None))

    for tool in body.get("tools") or []:
        add(tool)
    for block in _blocks(body.get("system")):
        add(block, "system")
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            for block in _blocks(message.get("content")):
                add(block, str(message.get("role")))
    return out


class PromptCache:
    """A `CacheSimulator` with the API's prefix, breakpoint, lookback, minimum-length and TTL rules."""

    def __init__(self, *, min_tokens: int = 1024, lookback_blocks: int = 20,
                 clock: Callable[[], float] = time.monotonic):
        self.min_tokens = min_tokens
        self.lookback_blocks = lookback_blocks
        self.clock = clock
        self._entries: dict[str, tuple[float, float]] = {}  # prefix hash -> (expires at, ttl seconds)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def account(self, body: dict[str, Any], total_input_tokens: int) -> PromptUsage:
        blocks = prompt_blocks(body)
        hashes: list[str] = []
        tokens: list[int] = []
        h = hashlib.sha256(str(body.get("model")).encode()).hexdigest()
        chars = 0
        for block, _ in blocks:
            text = json.dumps(block, ensure_ascii=False, sort_keys=True)
            h = hashlib.sha256((h + text).encode()).hexdigest()
            chars += len(text)
            hashes.append(h)
            tokens.append(min(chars // 4, total_input_tokens))
        breakpoints = [(i, TTL_SECONDS.get(str(mark.get("ttl", "5m")), 300.0))
                       for i, (_, mark) in enumerate(blocks) if mark is not None]
        if not breakpoints:
            return PromptUsage(input_tokens=total_input_tokens)

        with self._lock:
            now = self.clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            read_end = -1
            candidates = sorted({j for i, _ in breakpoints for j in range(max(0, i - self.lookback_blocks), i + 1)},
                                reverse=True)
            for j in candidates:
                entry = self._entries.get(hashes[j])
                if entry is not None:
                    read_end = j
                    self._entries[hashes[j]] = (now + entry[1], entry[1])  # a read refreshes the TTL
                    break
            read = tokens[read_end] if read_end >= 0 else 0
            written_to, written_1h_to = read, read
            for i, ttl in breakpoints:
                if i <= read_end or tokens[i] < self.min_tokens:
                    continue
                self._entries[hashes[i]] = (now + ttl, ttl)
                written_to = max(written_to, tokens[i])
                if ttl > TTL_SECONDS["5m"]:
                    written_1h_to = max(written_1h_to, tokens[i])
        write = written_to - read
        return PromptUsage(input_tokens=total_input_tokens - read - write, cache_creation_input_tokens=write,
                           cache_read_input_tokens=read, cache_creation_1h_input_tokens=written_1h_to - read)
