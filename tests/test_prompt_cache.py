"""Prompt caching: the breakpoints the agent loop sets, and the scripted model's cache accounting."""

import copy
import sys
from pathlib import Path

import anthropic
import pytest

from cockpit.agents.caching import with_cache_breakpoints
from cockpit.agents.loop import _usage_of
from cockpit.agents.prompt_cache import PromptCache
from cockpit.agents.scripted import ScriptedModel, ScriptedModelServer, request_input_tokens
from cockpit.domain.prices import Usage, default_prices

SYSTEM = "ROLE: builder\n" + "Rules of the house. " * 400  # ~2000 tokens: above the 1024 minimum
TOOLS = [{"name": f"tool_{i}", "description": "does a thing " * 20, "input_schema": {"type": "object"}} for i in range(3)]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def body(messages, *, system=SYSTEM, prefix_ttl="5m", model="claude-sonnet-4-6"):
    return {"model": model, "max_tokens": 100,
            **with_cache_breakpoints(tools=TOOLS, system=system, messages=messages, prefix_ttl=prefix_ttl)}


def account(cache, b):
    return cache.account(b, request_input_tokens(b))


def conversation(turns):
    msgs = [{"role": "user", "content": "Task T1: add a CSV export"}]
    for i in range(turns):
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": f"step {i} " * 30}]})
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok " * 50}]})
    return msgs


def test_breakpoints_mark_tools_system_and_the_last_two_user_messages_without_touching_the_input():
    msgs = conversation(3)
    before = copy.deepcopy(msgs)
    b = body(msgs, prefix_ttl="1h")
    assert msgs == before
    marks = [t.get("cache_control") for t in b["tools"]]
    assert marks == [None, None, {"type": "ephemeral", "ttl": "1h"}]
    assert b["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    marked = [i for i, m in enumerate(b["messages"]) for blk in m["content"] if isinstance(blk, dict)
              and "cache_control" in blk]
    assert marked == [4, 6] and b["messages"][6]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    # the first turn: a plain string becomes a marked text block
    first = body([{"role": "user", "content": "hi"}])["messages"]
    assert first == [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]


def test_first_request_writes_the_prefix_and_the_same_request_then_reads_it():
    cache = PromptCache(clock=Clock())
    b = body(conversation(0))
    total = request_input_tokens(b)
    first = account(cache, b)
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens > 1024
    assert first.input_tokens + first.cache_creation_input_tokens == total
    again = account(cache, b)
    assert again.cache_creation_input_tokens == 0
    assert again.cache_read_input_tokens == first.cache_creation_input_tokens
    assert again.input_tokens == first.input_tokens  # the JSON around the blocks, never cached


def test_a_rolling_conversation_reads_what_the_previous_turn_wrote_and_writes_only_the_new_turn():
    cache = PromptCache(clock=Clock())
    usages = [account(cache, body(conversation(n))) for n in range(6)]
    for prev, cur in zip(usages, usages[1:], strict=False):
        assert cur.cache_read_input_tokens == prev.cache_read_input_tokens + prev.cache_creation_input_tokens
        assert 0 < cur.cache_creation_input_tokens < cur.cache_read_input_tokens
    read = sum(u.cache_read_input_tokens for u in usages)
    total = sum(u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens for u in usages)
    assert read / total > 0.7


def test_entries_expire_after_their_ttl_reads_refresh_it_and_one_hour_writes_are_counted_apart():
    clock = Clock()
    cache = PromptCache(clock=clock)
    b = body(conversation(0))
    written = account(cache, b).cache_creation_input_tokens
    clock.now += 299
    assert account(cache, b).cache_read_input_tokens == written  # read: the TTL starts again
    clock.now += 299
    assert account(cache, b).cache_read_input_tokens == written
    clock.now += 301
    expired = account(cache, b)
    assert expired.cache_read_input_tokens == 0 and expired.cache_creation_input_tokens == written

    clock = Clock()
    cache = PromptCache(clock=clock)
    hour = body(conversation(0), prefix_ttl="1h")
    first = account(cache, hour)
    assert 0 < first.cache_creation_1h_input_tokens < first.cache_creation_input_tokens  # the conversation is 5m
    clock.now += 1800
    later = account(cache, hour)
    assert later.cache_read_input_tokens == first.cache_creation_1h_input_tokens  # the prefix is still there
    assert later.cache_creation_1h_input_tokens == 0


def test_a_changed_system_prompt_misses_from_there_but_the_tools_prefix_still_reads():
    cache = PromptCache(clock=Clock(), min_tokens=100)
    account(cache, body(conversation(1)))
    changed = account(cache, body(conversation(1), system=SYSTEM + " One more rule."))
    tools_only = request_input_tokens({"tools": TOOLS}) - 3
    assert 0 < changed.cache_read_input_tokens <= tools_only + 10
    assert changed.cache_creation_input_tokens > 1000
    # another model never reads this model's cache
    other = account(cache, body(conversation(1), model="claude-opus-4-6"))
    assert other.cache_read_input_tokens == 0


def test_prefixes_below_the_minimum_are_not_cached_and_no_breakpoint_means_no_caching():
    cache = PromptCache(clock=Clock())
    small = {"model": "m", "max_tokens": 5, **with_cache_breakpoints(tools=[], system="short", messages=[
        {"role": "user", "content": "hi"}])}
    for _ in range(2):
        u = account(cache, small)
        assert (u.cache_creation_input_tokens, u.cache_read_input_tokens) == (0, 0)
    plain = {"model": "m", "max_tokens": 5, "system": SYSTEM, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(2):
        assert account(cache, plain).input_tokens == request_input_tokens(plain)


def test_the_lookback_finds_a_previous_breakpoint_at_most_twenty_blocks_back():
    start = [{"role": "user", "content": "start"}]

    def later(n_blocks, *, second_marker):
        b = body([*start, {"role": "assistant", "content": [{"type": "text", "text": f"part {i} " * 20}
                                                              for i in range(n_blocks)]},
                  {"role": "user", "content": [{"type": "text", "text": "next"}]}])
        if not second_marker:
            b["messages"][0] = {"role": "user", "content": "start"}
        return b

    for n_blocks, hit in ((10, True), (30, False)):
        cache = PromptCache(clock=Clock())
        through_start = account(cache, body(start)).cache_creation_input_tokens
        read = account(cache, later(n_blocks, second_marker=False)).cache_read_input_tokens
        assert (read == through_start) is hit
        assert 0 < read <= through_start  # a miss still reads the system prompt (its own breakpoint)
        # with the loop's second marker on the previous user message, the read is found either way
        cache = PromptCache(clock=Clock())
        account(cache, body(start))
        assert account(cache, later(n_blocks, second_marker=True)).cache_read_input_tokens == through_start


async def test_the_sdk_reads_the_simulated_usage_and_a_one_hour_write_is_priced_at_2x():
    model = ScriptedModel.from_paths([Path(__file__).parent / "scenarios" / "scripted_model_basic.toml"])
    assert isinstance(model.cache, PromptCache)  # the default
    with ScriptedModelServer(model) as server:
        client = anthropic.AsyncAnthropic(api_key="t", base_url=server.base_url, max_retries=0)
        b = body([{"role": "user", "content": "Please Add CSV export to the shop."}], prefix_ttl="1h")
        b.pop("model")
        usages = []
        for _ in range(2):
            async with client.messages.stream(model="claude-sonnet-4-6", **b) as stream:
                usage = Usage()
                async for ev in stream:
                    if ev.type == "message_start":
                        usage = _usage_of(ev.message.usage, usage)
                    elif ev.type == "message_delta":
                        usage = _usage_of(ev.usage, usage)
                final = await stream.get_final_message()
            usages.append(_usage_of(final.usage, usage))
        await client.close()
    first, second = usages
    assert first.cache_creation_1h_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens and second.cache_creation_input_tokens == 0
    p = default_prices().price("claude-sonnet-4-6")
    w1h = first.cache_creation_1h_input_tokens
    w5m = first.cache_creation_input_tokens - w1h
    expected = (first.input_tokens * p.input + w5m * p.input * 1.25 + w1h * p.input * 2 + first.output_tokens * p.output) / 1e6
    assert default_prices().cost("claude-sonnet-4-6", first) == pytest.approx(expected)


def test_a_twenty_turn_builder_session_reads_most_of_its_input_from_the_cache():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.cache_ratio import GOAL, measure

    r = measure(20)
    assert r["calls"] == 20 and r["turns"] == 20 and r["tool_calls"] == 19 and r["tool_errors"] == []
    assert r["cache_read_ratio"] >= GOAL, r
