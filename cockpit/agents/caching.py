"""Prompt-cache breakpoints for a Messages request: the stable prefix and the rolling conversation.

The API caches a prompt prefix (tools, then system, then messages) up to each
block marked `cache_control`, and on the next request reads the longest marked
prefix it has seen, looking back up to 20 blocks from each breakpoint. So:

1. the last tool: the tool definitions, stable for a role;
2. the last system block: the rules and memories (and who the agent is);
3. the last block of the latest user message: the conversation so far, written
   now and read on the next turn;
4. the last block of the user message before it: where the previous request
   wrote, so the read is found even when a turn added more than 20 blocks.

Four is the API's maximum. The caller's message list is never modified: the
breakpoints are on copies, so old turns never pile up markers.
"""

from __future__ import annotations

from typing import Any, Literal

CacheTTL = Literal["5m", "1h"]


def cache_control(ttl: CacheTTL = "5m") -> dict[str, str]:
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def _marked_blocks(content: Any, mark: dict[str, str]) -> list[Any]:
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    if blocks and isinstance(blocks[-1], dict):
        blocks[-1] = {**blocks[-1], "cache_control": mark}
    return blocks


def with_cache_breakpoints(*, tools: list[dict[str, Any]], system: str | list[dict[str, Any]],
                           messages: list[dict[str, Any]], prefix_ttl: CacheTTL = "5m") -> dict[str, Any]:
    """`tools`, `system` and `messages` for the request, with the breakpoints above.

    A longer TTL must come before a shorter one in the prompt, so only the stable
    prefix may take "1h"; the conversation always uses the 5-minute cache.
    """
    prefix = cache_control(prefix_ttl)
    out_tools = [dict(t) for t in tools]
    if out_tools:
        out_tools[-1]["cache_control"] = prefix
    out_system = _marked_blocks(system, prefix)
    out_messages = list(messages)
    rolling = cache_control("5m")
    users = [i for i, m in enumerate(out_messages) if m.get("role") == "user"][-2:]
    for i in users:
        out_messages[i] = {**out_messages[i], "content": _marked_blocks(out_messages[i].get("content"), rolling)}
    return {"tools": out_tools, "system": out_system, "messages": out_messages}
