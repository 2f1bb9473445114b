"""`cockpit init [DIR]`: a factory of one's own: factory.toml, rules/, memory/, scenarios/.

factory.toml is generated from the pydantic schema in cockpit/config.py, so it shows every
key the loader accepts, each with its default and a line saying what it does; the defaults
are written commented out, so they follow cockpit's own defaults until the user sets one.
The same walk of the schema renders the README's reference table (`reference_markdown`).

Nothing is overwritten without --force, and even then the store in memory/ is never touched.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomlkit
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..config import FactoryConfig

# What each key does and an example value, where the schema's own description is missing or
# too terse. Keys are written as in the README: `products[].name`, `roles.<role>.model`.
KEY_HELP: dict[str, tuple[str, Any]] = {
    "factory.name": ("a name for this factory, shown in the cockpit", "acme"),
    "factory.store": ("the SQLite store (event log, tasks, spend), relative to factory.toml", "memory/cockpit.db"),
    "factory.worktrees": ("where each task's git worktree is made, relative to factory.toml", "/var/tmp/worktrees"),
    "factory.rules": ("the rules every agent reads (markdown), relative to factory.toml", "rules"),
    "factory.max_rounds": ("failed builder rounds before a task blocks and waits for you", 3),
    "factory.sandbox": ("\"bwrap\" runs agent code and tests in bubblewrap; \"off\" runs them unconfined (shown)",
                        "bwrap"),
    "factory.toolchains": ("directories agent commands and tests may read besides /usr, /bin, /lib, /etc and the "
                           "cockpit's Python (e.g. a toolchain in your home); `product add` adds the ones it finds",
                           ["~/.cargo", "~/.rustup"]),
    "factory.human": ("the actor recorded for what you do at the keyboard", "human:ada"),
    "limits.max_agents": ("agents working at once, across all products", 4),
    "limits.max_agents_per_product": ("agents working at once on one product", 1),
    "limits.agent_max_turns": ("model turns one agent session may take before it stops", 60),
    "limits.command_timeout_s": ("seconds an agent's command may run before it is killed", 300),
    "limits.test_timeout_s": ("seconds the tests gate may run before it fails", 1200),
    "limits.output_cap_bytes": ("bytes of a command's output kept (head and tail)", 128000),
    "limits.agent_nice": ("CPU niceness (0-19) of agents' own commands: on a busy machine the tests gates and the "
                          "cockpit come first, the agents take every cycle left; 0: the same as the gates", 5),
    "model.mode": ("\"auto\": the real API when ANTHROPIC_API_KEY is set, else the scripted model; "
                   "\"api\": always the API; \"scripted\": always the offline scripted model", "api"),
    "model.scenarios": ("the scripted model's scenario files (*.toml), relative to factory.toml", "scenarios"),
    "model.timeout_s": ("seconds one API request may take (connecting: at most 10)", 300),
    "model.max_retries": ("SDK retries on 408/409/429/5xx and connection errors, with backoff", 2),
    "model.chunk_delay_s": ("scripted model only: pause between streamed events, to watch it type", 0.03),
    "roles.<role>.model": ("the model for a role (builder, reviewer, breaker): a name or alias the API knows, "
                           "priced in the bundled table or under [prices]", "claude-opus-4-6"),
    "roles.<role>.max_tokens": ("the output limit of each of that role's model calls", 4096),
    "products[].name": ("the product's name: letters, digits, '.', '_', '-' (it names branches and directories)",
                        "shop"),
    "products[].path": ("the product's git repository, relative to factory.toml or absolute", "../shop"),
    "products[].test_command": ("what the tests gate runs, in the sandbox, on a task's commit merged onto main",
                                "python -m pytest -q"),
    "products[].main_branch": ("the branch work lands on", "main"),
    "products[].budget_usd": ("the product's budget in USD; none: no limit", 20.0),
    "products[].task_budget_usd": ("each new task's budget in USD; none: no limit", 2.0),
    "products[].serial": ("work this product's tasks one at a time, in queue order", True),
    "products[].protected": ("more files whose change needs a human's approval (gitignore-like globs), on top of "
                             "the test harness defaults", ["migrations/**", "*.lock"]),
    "prices.<model>.input": ("USD per million input tokens (overrides or adds to the bundled price table)", 3.0),
    "prices.<model>.output": ("USD per million output tokens", 15.0),
    "prices.<model>.cache_write_5m": ("USD per million tokens written to the 5-minute cache; none: 1.25 x input",
                                      3.75),
    "prices.<model>.cache_write_1h": ("USD per million tokens written to the 1-hour cache; none: 2 x input", 6.0),
    "prices.<model>.cache_read": ("USD per million tokens read from the cache; none: 0.1 x input", 0.3),
    "prices.<model>.assumed": ("true when the price was not confirmed from a published list", False),
    "budgets.day_usd": ("all model spend in one local day, in USD; none: no limit", 50.0),
    "budgets.factory_usd": ("all model spend of the factory, in USD; none: no limit", 500.0),
    "memory.inject_tokens": ("token budget of the lessons recalled into each agent session", 3000),
    "memory.fade_days": ("a lesson unused this many days is no longer recalled (pinned ones always are)", 90.0),
    "memory.dir": ("where `cockpit memory export` writes, relative to factory.toml", "memory"),
}

# How a mapping's keys are shown in key paths.
_PLACEHOLDERS = {"roles": "<role>", "prices": "<model>"}


@dataclass(frozen=True)
class KeyInfo:
    key: str  # e.g. "limits.max_agents", "products[].name", "roles.<role>.model"
    default: Any  # PydanticUndefined when required
    choices: tuple[Any, ...]  # Literal values, if any
    description: str
    example: Any

    @property
    def required(self) -> bool:
        return self.default is PydanticUndefined


def _literal_values(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return ()


def _walk(model: type[BaseModel], prefix: str) -> Iterator[KeyInfo]:
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        tp = field.annotation
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            yield from _walk(tp, key + ".")
        elif origin is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            yield from _walk(args[1], f"{key}.{_PLACEHOLDERS.get(name, '<key>')}.")
        elif origin is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            yield from _walk(args[0], f"{key}[].")
        else:
            if field.default_factory is not None:
                default = field.default_factory()  # type: ignore[call-arg]
            else:
                default = field.default
            desc, example = KEY_HELP.get(key, (field.description or "", None))
            yield KeyInfo(key, default, _literal_values(tp), desc, example)


def schema_keys() -> list[KeyInfo]:
    """Every key factory.toml accepts, found by walking the pydantic schema."""
    return list(_walk(FactoryConfig, ""))


def _toml(value: Any) -> str:
    if isinstance(value, dict):  # a table as a value: inline, on its key's line
        table = tomlkit.inline_table()
        table.update(value)
        return table.as_string().strip() or "{}"
    return "<value>" if value is None else tomlkit.item(value).as_string()


def _default_text(k: KeyInfo) -> str:
    if k.required:
        return "required"
    if k.default is None:
        return "none"
    return _toml(k.default)


def reference_markdown() -> str:
    """The README's factory.toml reference table, rendered from the schema."""
    rows = ["| key | default | example | what it does |", "| --- | --- | --- | --- |"]
    for k in schema_keys():
        example = "" if k.example is None else f"`{_toml(k.example)}`"
        default = _default_text(k)
        default = default if default in ("required", "none") else f"`{default}`"
        rows.append(f"| `{k.key}` | {default} | {example} | {k.description.replace('|', '/')} |")
    return "\n".join(rows)


# --- the file init writes --------------------------------------------------------------

_HEADER = """\
# factory.toml: the configuration of one software factory, written by `cockpit init`.
# Every key is listed with its default, commented out: uncomment a line to change it.
# The README's "factory.toml reference" explains each key; `cockpit doctor` checks the lot.
# Paths are relative to this file.
"""

_ROLES_NOTE = """\
# Each role's model and output limit. With ANTHROPIC_API_KEY set (and [model] mode "auto"
# or "api") these names go to the API as written: a model alias or a dated model id."""

_PRICES_NOTE = """\
# Prices in USD per million tokens override or extend the bundled, dated table, e.g. for a
# model it does not know yet:"""

_PRODUCTS_NOTE = """\
# Products are the git repositories the factory works on. Add one with
#   cockpit product add PATH [--name N] [--test "CMD"] [--branch main] [--budget USD]
# which checks the repository, runs its tests once in the sandbox and writes an entry like:"""


def _comment_line(k: KeyInfo, *, active: bool = False, value: Any = None) -> list[str]:
    name = k.key.rsplit(".", 1)[-1]
    desc = k.description
    if k.choices:
        desc += f" (one of: {', '.join(_toml(c) for c in k.choices)})" if "\"" not in desc else ""
    lines = [f"# {desc}"] if desc else []
    if active:
        lines.append(f"{name} = {_toml(value)}")
    elif k.required:
        lines.append(f"# {name} = {_toml(k.example)}    (required)")
    elif k.default is None:
        lines.append(f"# {name} = {_toml(k.example)}    (default: none)")
    else:
        lines.append(f"# {name} = {_toml(k.default)}")
    return lines


# What `cockpit init` proposes as the day's budget: enough for a few dozen tasks on a Sonnet-class model,
# small enough that a runaway loop stops the same day. The human changes it; `--day-budget none` leaves it out.
PROPOSED_DAY_USD = 20.0


def factory_template(name: str, *, day_usd: float | None = PROPOSED_DAY_USD) -> str:
    """A factory.toml with every schema key, commented; valid as it stands (no products yet).

    `day_usd` is written as an active `[budgets] day_usd`: a new factory starts with a ceiling on a day's spend."""
    keys = schema_keys()
    out = [_HEADER]
    sections: dict[str, list[KeyInfo]] = {}
    for k in keys:
        sections.setdefault(k.key.split(".", 1)[0].removesuffix("[]"), []).append(k)
    # products last: `cockpit product add` appends its entries at the end, under their example
    order = sorted(sections, key=lambda s: s == "products")
    for section in order:
        ks = sections[section]
        if section == "roles":
            out.append(_ROLES_NOTE)
            roles = typing.get_args(typing.get_args(FactoryConfig.model_fields["roles"].annotation)[0])
            for i, role in enumerate(roles):
                out.append(f"[roles.{role}]")
                for k in ks:
                    out += _comment_line(k)[-1:] if i else _comment_line(k)
                out.append("")
        elif section == "prices":
            out.append(_PRICES_NOTE)
            out.append('# [prices."my-model"]')
            for k in ks:
                out.append(f"#   {k.key.rsplit('.', 1)[-1]} = {_toml(k.example)}    # {k.description}")
            out.append("")
        elif section == "products":
            out.append(_PRODUCTS_NOTE)
            out.append("# [[products]]")
            for k in ks:
                out.append(f"#   {k.key.rsplit('.', 1)[-1]} = {_toml(k.example)}    # {k.description}")
            out.append("")
        else:
            out.append(f"[{section}]")
            for k in ks:
                if k.key == "factory.name":
                    out += _comment_line(k, active=True, value=name)
                elif k.key == "budgets.day_usd" and day_usd is not None:
                    out += _comment_line(k, active=True, value=day_usd)
                    out[-1] += "    # proposed by cockpit init: raise it, or remove the line for no limit"
                else:
                    out += _comment_line(k)
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


_SCENARIOS_README = """\
# Scenarios for the scripted model

With no ANTHROPIC_API_KEY (and `[model] mode = "auto"`), or with `mode = "scripted"`, the
agents talk to an offline, scripted model instead of Claude: it plays the `*.toml` files in
this directory, turn by turn, through the real SDK. It is how the demo and the tests run
without a key. The format is described in `cockpit/agents/scenarios.py`; the demo's
scenarios (`cockpit demo --dir D`, then `D/scenarios/`) are worked examples.
"""

_GITIGNORE = """\
# cockpit: the store and the task worktrees are state, not configuration
/memory/*.db
/memory/*.db-*
/worktrees/
"""


class InitRefused(Exception):
    """init would overwrite something; the message names it."""


def init_factory(directory: Path, *, force: bool = False, day_usd: float | None = PROPOSED_DAY_USD) -> list[Path]:
    """Write a new factory into `directory`; returns what was written. Never touches the store."""
    from ..config import default_rules_dir

    directory = Path(directory).expanduser().resolve()
    factory = directory / "factory.toml"
    rules_src = default_rules_dir()
    rules = directory / "rules"
    if not force:
        if factory.exists():
            raise InitRefused(f"{factory} already exists: not overwritten (use --force to replace it)")
        clashes = [rules / f.name for f in sorted(rules_src.glob("*.md")) if (rules / f.name).exists()]
        if clashes:
            raise InitRefused(f"{clashes[0]} already exists: not overwritten (use --force to replace the default rules)")
    if not rules_src.is_dir():
        raise InitRefused(f"the default rules are missing from this installation ({rules_src}): reinstall cockpit")
    directory.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in directory.name) or "factory"
    written = []
    factory.write_text(factory_template(name, day_usd=day_usd), encoding="utf-8")
    written.append(factory)
    rules.mkdir(exist_ok=True)
    for f in sorted(rules_src.glob("*.md")):
        shutil.copyfile(f, rules / f.name)
    written.append(rules)
    memory = directory / "memory"
    memory.mkdir(exist_ok=True)
    (memory / ".gitkeep").touch()
    written.append(memory)
    scenarios = directory / "scenarios"
    scenarios.mkdir(exist_ok=True)
    if force or not (scenarios / "README.md").exists():
        (scenarios / "README.md").write_text(_SCENARIOS_README, encoding="utf-8")
    written.append(scenarios)
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(_GITIGNORE, encoding="utf-8")
        written.append(gitignore)
    return written


def cmd_init(args: argparse.Namespace) -> int:
    from ..config import load_factory

    directory = Path(args.dir) if args.dir else Path.cwd()
    try:
        written = init_factory(directory, force=args.force, day_usd=args.day_budget)
    except InitRefused as e:
        print(f"cockpit: {e}", file=sys.stderr)
        return 2
    factory = written[0]
    load_factory(factory)  # what init writes must load; a failure here is a bug, and exits 2 loudly
    print(f"wrote {', '.join(str(p) + ('/' if p.is_dir() else '') for p in written)}")
    if args.day_budget is not None:
        print(f"daily budget: ${args.day_budget:.2f} of model spend, proposed ([budgets] day_usd in {factory}; "
              "change it there, or `cockpit init --day-budget USD|none`)")
    else:
        print(f"daily budget: none (no limit on a day's spend; set [budgets] day_usd in {factory})")
    f = f" --factory {factory}" if Path.cwd().resolve() != factory.parent else ""
    steps = [
        (f"cockpit product add PATH/TO/REPO{f}", "checks it and runs its tests once"),
        (f"cockpit doctor{f}", "git, sandbox, products, store, API key, model"),
        (f"cockpit task add NAME \"what to do\"{f}", ""),
        (f"cockpit run{f}", "with ANTHROPIC_API_KEY set, the agents use Claude"),
    ]
    width = max(len(c) for c, _ in steps)
    print("next:")
    for command, note in steps:
        print(f"  {command:<{width}}  # {note}" if note else f"  {command}")
    return 0


def _day_budget(text: str) -> float | None:
    if text.strip().lower() in ("none", "0", "off"):
        return None
    try:
        usd = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD (or 'none')") from None
    if not math.isfinite(usd) or usd < 0:
        raise argparse.ArgumentTypeError("the day's budget is a positive amount in USD (or 'none')")
    return usd


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("init", help="write a new factory: factory.toml, rules/, memory/, scenarios/")
    p.add_argument("dir", nargs="?", help="where (default: the current directory)")
    p.add_argument("--force", action="store_true", help="overwrite factory.toml and the default rules (never the store)")
    p.add_argument("--day-budget", type=_day_budget, default=PROPOSED_DAY_USD, metavar="USD|none",
                   help=f"the day's model spend limit written to [budgets] day_usd (default: {PROPOSED_DAY_USD:g}; "
                        "none: no limit)")
    p.set_defaults(func=cmd_init)
