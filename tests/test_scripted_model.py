"""The scripted model: the real anthropic SDK over real sockets, no mocks."""

from __future__ import annotations

import asyncio
import math
import re
import time
from pathlib import Path

import anthropic
import httpx2
import pytest

from cockpit.agents.scenarios import ScenarioError, Script, load_scenario_file, load_scenarios
from cockpit.agents.scripted import (
    NO_SCRIPT_TEXT,
    ScriptedModel,
    ScriptedModelServer,
    find_commit_sha,
    request_input_tokens,
    scripted_tokens,
)

SCENARIOS = Path(__file__).parent / "scenarios" / "scripted_model_basic.toml"
MODEL = "claude-sonnet-4-6"
BUILDER = "You build software.\nROLE: builder\nFollow the rules."
REVIEWER = [{"type": "text", "text": "You review changes."}, {"type": "text", "text": "ROLE: reviewer"}]
TOOLS = [
    {"name": name, "description": f"the {name} tool", "input_schema": {"type": "object", "properties": {}}}
    for name in ("read_file", "write_file", "run_tests", "git_log", "approve")
]
TOOL_ID = re.compile(r"^toolu_[A-Za-z0-9]{24}$")


@pytest.fixture(scope="module")
def scripts() -> list[Script]:
    return load_scenarios([SCENARIOS])


@pytest.fixture(scope="module")
def server(scripts):
    with ScriptedModelServer(ScriptedModel(scripts)) as srv:
        yield srv


@pytest.fixture
async def client(server):
    async with anthropic.AsyncAnthropic(api_key="scripted", base_url=server.base_url, max_retries=0) as c:
        yield c


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def last_body(server: ScriptedModelServer) -> dict:
    return server.requests[-1]


async def test_stream_text_and_tool_use(client, server):
    """The SDK's stream helper must rebuild text, tool input and usage from our SSE bytes."""
    deltas: list[str] = []
    async with client.messages.stream(
        model=MODEL, max_tokens=1024, system=BUILDER, tools=TOOLS,
        messages=[user("Please Add CSV export to the shop.")],
    ) as stream:
        async for event in stream:
            if event.type == "text":
                deltas.append(event.text)
        final = await stream.get_final_message()

    assert len(deltas) > 1, "text should arrive in several deltas"
    assert "".join(deltas) == "I'll read the code first."
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "I'll read the code first."
    tool = final.content[1]
    assert tool.name == "read_file" and tool.input == {"path": "shop/export.py"}
    assert TOOL_ID.match(tool.id)
    assert final.id.startswith("msg_") and final.model == MODEL
    assert final.stop_reason == "tool_use"
    body = last_body(server)
    assert final.usage.input_tokens == request_input_tokens(body) > 0
    expected_out = math.ceil((len("I'll read the code first.") + len('{"path": "shop/export.py"}')) / 4)
    assert final.usage.output_tokens == expected_out
    assert final.usage.cache_creation_input_tokens == 0 and final.usage.cache_read_input_tokens == 0
    assert final.usage.service_tier == "standard"


async def test_create_stream_true_event_order(client):
    """Raw events from create(stream=True) follow the API's order, ping included."""
    stream = await client.messages.create(
        model=MODEL, max_tokens=100, system=BUILDER, messages=[user("Add CSV export")], stream=True
    )
    types = [event.type async for event in stream]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_start") == types.count("content_block_stop") == 2
    assert "content_block_delta" in types
    # The SDK drops `ping` itself, so its presence is checked on the raw wire below.


async def test_raw_sse_wire_format(server):
    """The wire is real SSE over chunked HTTP: event/data pairs, ping, message_start usage."""
    body = {"model": MODEL, "max_tokens": 10, "system": BUILDER, "stream": True,
            "messages": [user("Add CSV export")]}
    async with httpx2.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/v1/messages", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    text = response.text
    assert text.startswith("event: message_start\ndata: {")
    assert "event: ping\n" in text and text.endswith("event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n")
    assert '"output_tokens": 1' in text.split("\n\n")[0]
    assert '"partial_json"' in text


async def test_non_streaming_create(client, server):
    """A plain create() gets the same answer as JSON, with usage and the echoed model."""
    message = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, system=BUILDER, messages=[user("Add CSV export")]
    )
    assert message.model == "claude-haiku-4-5"
    assert message.content[0].text == "I'll read the code first."
    assert message.content[1].input == {"path": "shop/export.py"}
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == request_input_tokens(last_body(server))
    assert message._request_id and message._request_id.startswith("req_")


async def test_multi_turn_conversation(client):
    """Each turn is chosen by the number of assistant messages; tool results feed back in."""
    messages = [user("Add CSV export")]
    seen: list[list[str]] = []
    for _ in range(4):
        message = await client.messages.create(
            model=MODEL, max_tokens=100, system=BUILDER, tools=TOOLS, messages=messages
        )
        seen.append([b.type for b in message.content])
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]})
        results = [
            {"type": "tool_result", "tool_use_id": b.id, "content": "ok"}
            for b in message.content if b.type == "tool_use"
        ]
        messages.append({"role": "user", "content": results or "continue"})
        if message.stop_reason == "end_turn":
            break
    assert seen == [["text", "tool_use"], ["text", "tool_use", "tool_use"], ["text"]]
    assert messages[-2]["content"][0]["text"] == "Done: CSV export added."
    # Turn 1's second tool has no input in the scenario: it is an empty object.
    run_tests = messages[3]["content"][2]
    assert run_tests == {"type": "tool_use", "id": run_tests["id"], "name": "run_tests", "input": {}}


async def test_sha_substitution(client):
    """{{sha}} becomes the last hash after "commit" in user text or tool results, in text and nested input."""
    first = await client.messages.create(
        model=MODEL, max_tokens=100, system=REVIEWER, messages=[user("Review task T1 (commit 1111111)")]
    )
    assert first.content[0].type == "tool_use" and first.content[0].input == {"limit": 1}
    messages = [
        user("Review task T1 (commit 1111111)"),
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{
            "type": "tool_result", "tool_use_id": first.content[0].id,
            "content": [{"type": "text", "text": "commit 3f9c2ab1d0e4\nAuthor: builder-1\n\n    Add CSV export"}],
        }]},
    ]
    async with client.messages.stream(model=MODEL, max_tokens=100, system=REVIEWER, messages=messages) as s:
        final = await s.get_final_message()
    assert final.content[0].text == "Approving 3f9c2ab1d0e4."
    assert final.content[1].input == {
        "commit": "3f9c2ab1d0e4", "notes": ["checked 3f9c2ab1d0e4", {"sha": "3f9c2ab1d0e4"}]
    }


def test_find_commit_sha_rules():
    """Only standalone lowercase hex of 7-40 chars near the word "commit" counts; the last one wins."""
    assert find_commit_sha("nothing here abcdef1") is None
    assert find_commit_sha("commit abc12") is None  # too short
    assert find_commit_sha("Commit: abcdef1 then commit `0123456789abcdef`") == "0123456789abcdef"
    assert find_commit_sha("Committed deadbeefcafe on main") == "deadbeefcafe"
    assert find_commit_sha("commit SHA: 1234567") == "1234567"
    assert find_commit_sha("commit ABCDEF1") is None  # uppercase is not a git sha
    assert find_commit_sha("commit xyzabc1234567") is None  # part of a longer word
    assert find_commit_sha("commit " + "a" * 41) is None


def test_sha_left_alone_without_commit(scripts):
    """With no commit mentioned the placeholder stays, so a broken scenario is visible."""
    model = ScriptedModel(scripts)
    body = {"model": MODEL, "max_tokens": 5, "system": REVIEWER, "messages": [
        user("Review"), {"role": "assistant", "content": "looking"}, user("no hash here"),
    ]}
    assert model.respond(body)["content"][0]["text"] == "Approving {{sha}}."


async def test_no_match_fallback(client):
    """An unscripted request, or one past the last turn, answers a fixed text and never crashes."""
    message = await client.messages.create(
        model=MODEL, max_tokens=100, system="ROLE: gardener", messages=[user("Add CSV export")]
    )
    assert [b.text for b in message.content] == [NO_SCRIPT_TEXT]
    assert message.stop_reason == "end_turn" and message.usage.output_tokens >= 1

    history = [user("Add CSV export")]
    for _ in range(3):
        history += [{"role": "assistant", "content": "x"}, user("go on")]
    async with client.messages.stream(model=MODEL, max_tokens=100, system=BUILDER, messages=history) as s:
        final = await s.get_final_message()
    assert final.content[0].text == NO_SCRIPT_TEXT and final.stop_reason == "end_turn"


async def test_count_tokens_matches_create_usage(client):
    """count_tokens and the usage of a call on the same prompt agree, so budgets can reserve exactly."""
    prompt = dict(model=MODEL, system=BUILDER, tools=TOOLS, messages=[user("Add CSV export")])
    counted = await client.messages.count_tokens(**prompt)
    message = await client.messages.create(max_tokens=100, **prompt)
    assert counted.input_tokens == message.usage.input_tokens
    assert counted.input_tokens == scripted_tokens(
        {"tools": TOOLS, "system": BUILDER, "messages": [user("Add CSV export")]}
    )


def test_scripted_tokens_are_a_quarter_of_the_chars():
    """The estimator is deterministic and public: budgets reserve with it."""
    assert scripted_tokens("abcd") == 1 and scripted_tokens("abcde") == 2 and scripted_tokens("") == 0
    assert scripted_tokens({"a": 1}) == math.ceil(len('{"a": 1}') / 4)


def test_selection_by_role_match_and_exclude(scripts):
    """Role comes from a "ROLE:" line (string or blocks); match/exclude look at the first user message only."""
    model = ScriptedModel(scripts)

    def text(system, first, *later):
        messages = [user(first)]
        for t in later:
            messages += [{"role": "assistant", "content": "ok"}, user(t)]
        return model.respond({"model": MODEL, "max_tokens": 5, "system": system, "messages": messages})[
            "content"][0].get("text")

    assert text(BUILDER, "Add CSV export") == "I'll read the code first."
    assert text(BUILDER, "Add CSV export\nRound: 2") == "Round two: nothing left to do."
    # exclude looks at the first user message only: a later "Round: 2" does not switch scripts.
    assert text(BUILDER, "Add CSV export", "Round: 2") == "Export written."
    # match is case-sensitive
    assert text(BUILDER, "add csv export") == NO_SCRIPT_TEXT
    # the role must be a line of its own, in a string or a list of text blocks
    assert text("ROLE: builders", "Add CSV export") == NO_SCRIPT_TEXT
    assert text([{"type": "text", "text": "x"}, {"type": "text", "text": "  ROLE: builder"}], "Add CSV export") \
        == "I'll read the code first."
    # a script without a role matches any role, and turn overrides apply
    message = model.respond({"model": MODEL, "max_tokens": 5, "messages": [user("usage please")]})
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"] == {"input_tokens": 1000, "output_tokens": 7, "cache_creation_input_tokens": 0,
                                "cache_read_input_tokens": 900, "service_tier": "standard"}


def test_bad_scenario_file_names_file_and_key(tmp_path):
    """A typo in a scenario must point at the file and the key, not surface mid-demo."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[script]]\nrole = "builder"\n[[script.turns]]\ntext = "hi"\n'
                   '[[script.turns.tool_use]]\nnmae = "read_file"\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario_file(bad)
    assert str(bad) in str(err.value)
    assert "script[0].turns[0].tool_use[0].nmae" in str(err.value)

    syntax = tmp_path / "syntax.toml"
    syntax.write_text("[[script]\n")
    with pytest.raises(ScenarioError, match=re.escape(str(syntax)) + ".*invalid TOML"):
        load_scenarios([syntax])

    empty_turn = tmp_path / "empty.toml"
    empty_turn.write_text('[[script]]\n[[script.turns]]\nstop_reason = "end_turn"\n')
    with pytest.raises(ScenarioError, match=r"script\[0\]\.turns\[0\]"):
        load_scenarios([empty_turn])

    with pytest.raises(ScenarioError, match="no such"):
        load_scenarios([tmp_path / "missing.toml"])


def test_load_directory_sorted(tmp_path):
    """Directories load their *.toml files in name order; scripts keep their source for logs."""
    (tmp_path / "b.toml").write_text('[[script]]\nname = "b"\n[[script.turns]]\ntext = "b"\n')
    (tmp_path / "a.toml").write_text('[[script]]\nname = "a"\n[[script.turns]]\ntext = "a"\n')
    (tmp_path / "notes.txt").write_text("ignored")
    scripts = load_scenarios([tmp_path])
    assert [s.name for s in scripts] == ["a", "b"]
    assert scripts[0].source.endswith("a.toml#script[0]")


async def test_keep_alive_reuses_one_connection(scripts):
    """The SDK pools connections; the server must serve several requests on one socket."""
    with ScriptedModelServer(ScriptedModel(scripts)) as srv:
        async with anthropic.AsyncAnthropic(api_key="scripted", base_url=srv.base_url, max_retries=0) as c:
            for i in range(3):
                await c.messages.create(model=MODEL, max_tokens=5, messages=[user(f"hi {i}")])
                async with c.messages.stream(model=MODEL, max_tokens=5, messages=[user("Add CSV export")]) as s:
                    await s.get_final_message()
            await c.messages.count_tokens(model=MODEL, messages=[user("x")])
        assert srv.connections_accepted == 1
        assert len(srv.requests) == 6  # count_tokens is not a /v1/messages call


async def test_concurrent_streams(client, server):
    """Many agents stream at once; every answer arrives whole."""
    async def one(i: int):
        async with client.messages.stream(
            model=MODEL, max_tokens=50, system=BUILDER, messages=[user(f"Add CSV export #{i}")]
        ) as s:
            return await s.get_final_message()

    before = len(server.requests)
    finals = await asyncio.gather(*(one(i) for i in range(20)))
    assert all(f.content[1].input == {"path": "shop/export.py"} for f in finals)
    assert len({f.content[1].id for f in finals}) == 20
    assert len(server.requests) - before == 20


async def test_errors_use_the_api_error_shape(client, server):
    """Unknown paths and bad JSON get Anthropic error bodies, which the SDK maps to its exceptions."""
    with pytest.raises(anthropic.NotFoundError) as err:
        await client.post("/v1/nowhere", cast_to=httpx2.Response, body={})
    message = err.value.body["error"]["message"]
    assert err.value.body == {"type": "error", "error": {"type": "not_found_error", "message": message}}

    async with httpx2.AsyncClient(base_url=server.base_url) as http:
        bad = await http.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert bad.json()["type"] == "error" and bad.json()["error"]["type"] == "invalid_request_error"
        # the connection survives a bad request
        ok = await http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": [user("hi")]})
        assert ok.status_code == 200 and ok.json()["input_tokens"] > 0

    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=5, messages="nope")  # type: ignore[arg-type]


def test_sync_client_and_idempotent_stop(scripts):
    """The server lives in its own thread, so even a blocking client works; stop() twice is fine."""
    srv = ScriptedModelServer(ScriptedModel(scripts))
    base_url = srv.start()
    assert re.match(r"^http://127\.0\.0\.1:\d+$", base_url) and base_url == srv.base_url
    with anthropic.Anthropic(api_key="scripted", base_url=base_url, max_retries=0) as c:
        assert c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")]).content[0].text == NO_SCRIPT_TEXT
    srv.stop()
    srv.stop()
    with pytest.raises(anthropic.APIConnectionError):
        with anthropic.Anthropic(api_key="scripted", base_url=base_url, max_retries=0, timeout=2) as c:
            c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])


async def test_latency_and_chunk_delay(scripts):
    """latency_s delays the first byte and chunk_delay_s spaces events, for realistic demos."""
    model = ScriptedModel(scripts, latency_s=0.1, chunk_delay_s=0.01)
    with ScriptedModelServer(model) as srv:
        async with anthropic.AsyncAnthropic(api_key="scripted", base_url=srv.base_url, max_retries=0) as c:
            started = time.perf_counter()
            async with c.messages.stream(model=MODEL, max_tokens=5, system=BUILDER,
                                         messages=[user("Add CSV export")]) as s:
                final = await s.get_final_message()
            elapsed = time.perf_counter() - started
    assert final.stop_reason == "tool_use"
    assert elapsed >= 0.1 + 0.01 * 10


def test_tool_input_must_be_json(tmp_path):
    """TOML dates cannot go on the wire; say so at load time, not as a 500 mid-run."""
    path = tmp_path / "date.toml"
    path.write_text('[[script]]\n[[script.turns]]\n[[script.turns.tool_use]]\nname = "x"\ninput = { when = 2024-01-01 }\n')
    with pytest.raises(ScenarioError, match=r"date\.toml: script\[0\]\.turns\[0\]\.tool_use\[0\].*JSON"):
        load_scenarios([path])
