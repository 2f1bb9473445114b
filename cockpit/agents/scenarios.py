"""Scenario files for the scripted model: TOML data, validated by pydantic.

A scenario file holds an ordered list of scripts. Each script says which requests it answers
(the agent's role, substrings of the first user message) and what the model says on each turn:

```toml
[[script]]
name = "builder: csv export"     # optional, shown in logs and the x-scripted-script header
role = "builder"                 # the system prompt has a line "ROLE: builder"; omit to match any
match = ["Add CSV export"]       # all must appear in the first user message ([] matches anything)
exclude = ["Round: 2"]           # none may appear in the first user message
system_match = ["[L"]            # all must appear in the system prompt (e.g. a recalled lesson)
[[script.turns]]                 # turn N answers the request that holds N assistant messages
text = "I'll read the code first."
[[script.turns.tool_use]]
name = "read_file"
input = { path = "shop/export.py" }
# optional: stop_reason = "max_tokens", usage = { input_tokens = 10, output_tokens = 5 }
```

`{{sha}}` in `text` or in any string of a tool `input` is replaced, at answer time, by the last
commit hash mentioned in the conversation (see `cockpit.agents.scripted.find_commit_sha`).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

__all__ = [
    "ScenarioError",
    "Script",
    "ScriptedToolUse",
    "ScriptedTurn",
    "ScriptedUsage",
    "load_scenario_file",
    "load_scenarios",
]

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScriptedUsage(_Strict):
    """Overrides of the estimated usage for one turn (absent fields keep the estimate)."""

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cache_creation_input_tokens: int | None = Field(default=None, ge=0)
    cache_read_input_tokens: int | None = Field(default=None, ge=0)


class ScriptedToolUse(_Strict):
    name: str
    input: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_name(self) -> "ScriptedToolUse":
        if not _TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {_TOOL_NAME.pattern}")
        try:
            json.dumps(self.input)
        except (TypeError, ValueError) as exc:  # e.g. a TOML date
            raise ValueError(f"tool input must be plain JSON data: {exc}") from exc
        return self


class ScriptedTurn(_Strict):
    text: str | None = None
    tool_use: list[ScriptedToolUse] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    usage: ScriptedUsage | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> "ScriptedTurn":
        if not self.text and not self.tool_use:
            raise ValueError("a turn needs `text` or at least one `tool_use`")
        return self


class Script(_Strict):
    name: str | None = None
    role: str | None = None
    match: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    system_match: list[str] = Field(default_factory=list)
    turns: list[ScriptedTurn] = Field(min_length=1)

    # Where the script came from ("path/to/file.toml#3"), for logs and error messages.
    _source: str = PrivateAttr(default="<inline>")

    @property
    def source(self) -> str:
        return self._source

    @property
    def label(self) -> str:
        return self.name or self._source


class _ScenarioFile(_Strict):
    script: list[Script] = Field(default_factory=list)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<file>"


def load_scenario_file(path: Path) -> list[Script]:
    """Load one scenario file; raise `ScenarioError` naming the file and the offending key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from exc
    try:
        parsed = _ScenarioFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ScenarioError(f"{path}: {problems}") from exc
    for index, script in enumerate(parsed.script):
        script._source = f"{path}#script[{index}]"
    return list(parsed.script)


def load_scenarios(paths: list[Path]) -> list[Script]:
    """Load scenario files, or directories of `*.toml` (sorted by name), in the given order."""
    scripts: list[Script] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for child in sorted(path.glob("*.toml")):
                scripts.extend(load_scenario_file(child))
        elif path.exists():
            scripts.extend(load_scenario_file(path))
        else:
            raise ScenarioError(f"{path}: no such scenario file or directory")
    return scripts
