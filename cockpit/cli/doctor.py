"""`cockpit doctor`: is this machine and this factory ready to run agents? A table of ok / FIX.

Each check says what it found and, when something is wrong, what to do. Nothing is
changed: the store is opened read-only (and not created), the test commands run on
scratch worktrees in the sandbox, and the model is asked only `count_tokens` (free), or
with --live one message of one output token. The API key is reported as present or
absent, never printed. Exit 1 when anything needs fixing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ..config import ConfigError, FactoryConfig, load_factory
from ..store import readonly
from ..store.schema import SCHEMA_VERSION
from ..host import safe_git
from ..host.sandbox import Sandbox, SandboxUnavailable

Status = Literal["ok", "warn", "fail", "skip"]
_LABEL = {"ok": "ok", "warn": "warn", "fail": "FIX", "skip": "skip"}

# doctor answers in seconds, whatever [model] says: one retry, a short timeout
DOCTOR_TIMEOUT_S = 30.0
DOCTOR_RETRIES = 1
_PING = [{"role": "user", "content": "Reply with OK."}]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _redact_url(url: str) -> str:
    """A base URL without any user:password part (a proxy URL may carry one)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    return urlunsplit(parts)


# --- machine --------------------------------------------------------------------------


def check_git() -> Check:
    exe = shutil.which("git")
    if exe is None:
        return Check("git", "fail", "git not found on PATH", "install git (e.g. 'apt-get install git')")
    try:
        out = safe_git.run_sync("--version", cwd=Path("/"), timeout=30).stdout.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("git", "fail", f"{exe} does not run: {e}", "reinstall git")
    return Check("git", "ok", out or exe)


def check_sandbox_view(config: FactoryConfig) -> Check:
    """What agent commands and tests see: the allow-list, so the user can judge it."""
    from ..factory.products import factory_sandbox

    sb = factory_sandbox(config)
    missing = [t for t in sb.toolchains if not t.is_dir()]
    lines = "\n    ".join(sb.exposure())
    if missing:
        return Check("sandbox view", "warn", lines, f"[factory] toolchains names missing directories: "
                     f"{', '.join(map(str, missing))}; fix or remove them in factory.toml")
    return Check("sandbox view", "ok", lines)


def check_sandbox(mode: str) -> Check:
    if mode == "off":
        return Check("sandbox", "warn", "[factory] sandbox = \"off\": agent commands and tests run unconfined",
                     "install bubblewrap and set sandbox = \"bwrap\"")
    try:
        Sandbox.check("bwrap")
    except SandboxUnavailable as e:
        return Check("sandbox", "fail", str(e))
    return Check("sandbox", "ok", "bubblewrap works: agent code runs with no network, no secrets, only its worktree "
                                  "writable")


# --- the factory ------------------------------------------------------------------------


def check_rules(config: FactoryConfig) -> Check:
    files = sorted(config.rules_path.rglob("*.md")) if config.rules_path.is_dir() else []
    if not files:
        from ..config import default_rules_dir

        return Check("rules", "warn", f"{config.rules_path}: no rules (*.md): agents work without the factory's rules",
                     f"copy the defaults: cp -r {default_rules_dir()} {config.rules_path}")
    return Check("rules", "ok", f"{len(files)} files in {config.rules_path}")


async def check_products(config: FactoryConfig, *, quick: bool, sandbox_ok: bool) -> list[Check]:
    """One row per product for its repository, one for its test command (run in parallel, a few at a time)."""
    from ..factory.products import ProductError, check_repo, describe_result, probe_tests
    from ..factory.workspaces import GitError

    if not config.products:
        return [Check("products", "warn", "no products yet", "add one: cockpit product add PATH")]
    slots = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))

    async def one(i: int) -> list[Check]:
        p = config.products[i]
        name, test = f"product {p.name}", f"product {p.name} tests"
        try:
            repo = await check_repo(config.resolve(p.path), p.main_branch)
        except ProductError as e:
            return [Check(name, "fail", str(e), f"or fix products[{i}] (path, main_branch) in {config.path}")]
        found = Check(name, "ok", f"{repo.path}: branch {repo.branch} at {repo.head[:12]}, no uncommitted changes")
        if quick:
            return [found, Check(test, "skip", f"not run (--quick): {p.test_command}")]
        if not sandbox_ok:
            return [found, Check(test, "skip", "not run: the sandbox is not usable (see above)")]
        try:
            async with slots:
                result = await probe_tests(config, repo.path, repo.branch, p.test_command)
        except (SandboxUnavailable, GitError) as e:
            return [found, Check(test, "fail", f"could not run {p.test_command!r}: {e}")]
        detail = f"{p.test_command!r} {describe_result(result, tail_lines=0 if result.ok else 8)}"
        if result.ok:
            return [found, Check(test, "ok", detail)]
        return [found, Check(test, "fail", detail, f"make the tests pass on {repo.branch}, or fix "
                                                   f"products[{i}].test_command (it runs in the sandbox, no network)")]

    rows = await asyncio.gather(*(one(i) for i in range(len(config.products))))
    return [c for r in rows for c in r]


def check_store(config: FactoryConfig) -> Check:
    p = config.store_path
    if not p.exists():
        return Check("store", "ok", f"{p}: not created yet (the first run creates it)")
    try:
        h = readonly.health(p, known_version=SCHEMA_VERSION)
    except readonly.UnreadableStore as e:
        return Check("store", "fail", f"{p}: cannot read it as SQLite ({e})",
                     "move the file aside (the next run starts a new store), or restore it from a backup")
    version, rows, events = h.schema_version, h.integrity, h.events
    if events is None:  # tables we may not know: look no further
        return Check("store", "fail", f"{p}: schema version {version} is newer than this cockpit "
                                      f"({SCHEMA_VERSION})", "upgrade cockpit")
    if rows != ["ok"]:
        return Check("store", "fail", f"{p}: integrity check failed: {'; '.join(rows[:5])}",
                     "stop the cockpit, back the file up, then try 'sqlite3 FILE .recover' or restore a backup")
    if version < SCHEMA_VERSION:
        return Check("store", "ok", f"{p}: schema version {version} (the next run migrates it to {SCHEMA_VERSION}), "
                                    f"integrity ok, {events} events")
    return Check("store", "ok", f"{p}: schema version {version} (current), integrity ok, {events} events")


# --- the model --------------------------------------------------------------------------


def check_mode(config: FactoryConfig) -> Check:
    """Online or OFFLINE, first thing: offline, a task on one's own repository finds no model to work it."""
    from ..agents.client import NO_MODEL_HINT, offline_reason

    why = offline_reason(config)
    if why is None:
        return Check("mode", "ok", "online: agents talk to the real API")
    detail = (f"OFFLINE ({why}): the scripted model plays {config.model.scenarios}/; a task it has no script "
              f"for blocks with \"{NO_MODEL_HINT}\", and its spend is simulated, shown apart from real spend")
    if config.model.mode == "scripted":
        return Check("mode", "ok", detail)
    return Check("mode", "warn", detail, "export ANTHROPIC_API_KEY=... to use Claude")


def check_api_key(config: FactoryConfig) -> Check:
    from ..agents.client import use_scripted

    has_key = bool(os.environ.get("ANTHROPIC_API_KEY"))
    mode = config.model.mode
    if use_scripted(config):
        why = "[model] mode = \"scripted\"" if mode == "scripted" else "ANTHROPIC_API_KEY is not set"
        note = " (ANTHROPIC_API_KEY is set, not used)" if has_key else ""
        return Check("API key", "ok", f"{why}: the scripted model is used (offline, plays {config.model.scenarios}/)"
                                      f"{note}")
    if not has_key:
        return Check("API key", "fail", "[model] mode = \"api\" but ANTHROPIC_API_KEY is not set",
                     "export ANTHROPIC_API_KEY=... (from the Anthropic console), or set mode = \"auto\"")
    return Check("API key", "ok", "ANTHROPIC_API_KEY is set (not shown); the real API is used")


def _role_models(config: FactoryConfig) -> dict[str, list[str]]:
    """model -> the roles that use it, in role order."""
    out: dict[str, list[str]] = {}
    for role in ("builder", "reviewer", "breaker"):
        out.setdefault(config.role(role).model, []).append(role)
    return out


def _deprecations(models: dict[str, list[str]]) -> list[Check]:
    try:
        from anthropic._data import DEPRECATED_MODELS  # private, but it is what the SDK warns from
    except ImportError:  # pragma: no cover - older SDKs
        return []
    out = []
    for model, roles in models.items():
        if model in DEPRECATED_MODELS:
            out.append(Check(f"model {model}", "warn", f"deprecated: end of life on {DEPRECATED_MODELS[model]}",
                             f"pick a current model for roles.{roles[0]}.model"))
    return out


def _api_problem(e: Exception, base: str, model: str, roles: list[str]) -> Check:
    import anthropic

    name = "model endpoint"
    where = f"roles.{roles[0]}.model"
    if isinstance(e, anthropic.APIConnectionError):  # includes timeouts
        cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
        return Check(name, "fail", f"cannot reach {base}: {type(e).__name__}: {e}{cause}",
                     "check the network or proxy, and ANTHROPIC_BASE_URL if you set it")
    if isinstance(e, anthropic.AuthenticationError):
        return Check(name, "fail", f"{base} refused the API key (401)", "check ANTHROPIC_API_KEY (a current, active key)")
    if isinstance(e, anthropic.PermissionDeniedError):
        return Check(f"model {model}", "fail", f"the key may not use {model} (403)",
                     f"use a model this key has access to in {where}")
    if isinstance(e, anthropic.NotFoundError):
        return Check(f"model {model}", "fail", f"{base} does not know model {model!r} (404)",
                     f"set {where} to a model name or alias the API knows")
    if isinstance(e, anthropic.RateLimitError):
        return Check(name, "warn", f"{base} is reachable and the key works, but answered 429 (rate limited)",
                     "wait, or lower [limits] max_agents")
    if isinstance(e, anthropic.APIStatusError):
        return Check(name, "fail", f"{base} answered {e.status_code}: {e.message}",
                     "try again later; if it persists, check the service status or ANTHROPIC_BASE_URL")
    return Check(name, "fail", f"{type(e).__name__}: {e}")


async def check_model(config: FactoryConfig, *, live: bool) -> list[Check]:
    import anthropic

    from ..agents.client import make_client, use_scripted
    from ..agents.scenarios import ScenarioError

    scripted = use_scripted(config)
    if not scripted and not os.environ.get("ANTHROPIC_API_KEY"):
        return [Check("model endpoint", "skip", "not checked: no API key (see above)")]
    models = _role_models(config)
    try:
        mc = make_client(config, timeout_s=DOCTOR_TIMEOUT_S, max_retries=DOCTOR_RETRIES)
    except ScenarioError as e:
        return [Check("scripted model", "fail", str(e), "fix the scenario file")]
    base = _redact_url(str(mc.client.base_url).rstrip("/"))
    where = "the scripted model (offline)" if scripted else base
    if not scripted and os.environ.get("ANTHROPIC_BASE_URL"):
        where += " (ANTHROPIC_BASE_URL)"
    out: list[Check] = []
    try:
        if scripted and mc.server is not None:
            n = len(mc.server.model.scripts)
            out.append(Check("scripted model", "ok" if n else "warn",
                             f"{n} scripts in {config.scenarios_path}",
                             "" if n else "without scripts the agents get no useful answers: set ANTHROPIC_API_KEY "
                                          "to use Claude, or add scenario files"))
        for model, roles in models.items():
            try:
                counted = await mc.client.messages.count_tokens(model=model, messages=_PING)
            except anthropic.APIError as e:
                out.append(_api_problem(e, base, model, roles))
                if isinstance(e, (anthropic.APIConnectionError, anthropic.AuthenticationError)):
                    break  # the other models would say the same
                continue
            detail = f"reachable at {where}: count_tokens answered ({counted.input_tokens} tokens) " \
                     f"for {', '.join(roles)}"
            if live:
                try:
                    msg = await mc.client.messages.create(model=model, max_tokens=1, messages=_PING)
                except anthropic.APIError as e:
                    out.append(_api_problem(e, base, model, roles))
                    continue
                detail += f"; a one-token message answered (stop_reason {msg.stop_reason})"
            out.append(Check(f"model {model}", "ok", detail))
    finally:
        await mc.close()
    return out + _deprecations(models)


# --- all of it ---------------------------------------------------------------------------


async def check_notify(config: FactoryConfig, *, live: bool) -> list[Check]:
    """Each [notify] channel: its secret resolves (env var or file) and, with --live, a test notice is accepted;
    the terminal channel: a controlling terminal can be opened. Secrets are never shown."""
    from ..factory.notify_sender import channels_of, redact

    try:
        channels = channels_of(config)
    except ConfigError as e:
        return [Check("notify", "fail", str(e))]
    if not channels:
        return [Check("notify", "ok", "no [notify] channel: notices wait in the outbox (cockpit notify list)")]
    checks = []
    for ch in channels:
        name = f"notify {ch.name}"
        shown = {"webhook": lambda c: f"webhook {redact(c.url, c.url)}",
                 "apprise": lambda c: f"apprise ({', '.join(map(str, c.names))})",
                 "terminal": lambda c: f"terminal {c.path}{' via tmux' if c.tmux else ''}",
                 "desktop": lambda c: f"desktop ({c.program})"}[ch.name](ch)
        if ch.name == "desktop" and (why := ch.problem()) is not None:
            checks.append(Check(name, "fail", f"{shown}: {why}"))
            continue
        if ch.name == "terminal" and not live:
            try:
                os.close(os.open(ch.path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK))
            except OSError as e:
                checks.append(Check(name, "fail", f"{shown}: {e.strerror}", "run the cockpit in a terminal, or "
                                    "set terminal = false in [notify]"))
                continue
        if not live:
            checks.append(Check(name, "ok", f"{shown} (not contacted; --live sends a test notice)"))
            continue
        err = await ch.deliver({"key": "doctor", "kind": "test", "text": "cockpit doctor --live: a test notice"})
        checks.append(Check(name, "fail", f"{shown}: {err}", "check the URL/token and that the service is up")
                      if err else Check(name, "ok", f"{shown} accepted a test notice"))
    return checks


async def run_checks(factory: Path, *, live: bool = False, quick: bool = False) -> tuple[list[Check], Path]:
    checks = [check_git()]
    path = Path(factory).expanduser()
    try:
        config = load_factory(path)
    except ConfigError as e:
        checks.append(check_sandbox("bwrap"))
        checks.append(Check("factory file", "fail", str(e)))
        return checks, path
    path = config.path or path
    sandbox = check_sandbox(config.factory.sandbox)
    checks.append(sandbox)
    checks.append(check_sandbox_view(config))
    n = len(config.products)
    checks.append(Check("factory file", "ok", f"{path}: valid, {n} product{'' if n == 1 else 's'}, "
                                              f"[model] mode = {config.model.mode!r}"))
    checks.append(check_rules(config))
    checks += await check_products(config, quick=quick, sandbox_ok=sandbox.status != "fail")
    checks.append(check_store(config))
    checks.extend(await check_notify(config, live=live))
    checks.append(check_mode(config))
    checks.append(check_api_key(config))
    checks += await check_model(config, live=live)
    return checks, path


def render(checks: list[Check], factory: Path) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"cockpit doctor: {factory}", ""]
    for c in checks:
        detail = c.detail.replace("\n", "\n" + " " * (width + 10))
        lines.append(f"  {_LABEL[c.status]:<5} {c.name:<{width}}  {detail}")
        if c.fix:
            lines.append(f"  {'':<5} {'':<{width}}  {'fix: ' if c.status == 'fail' else 'hint: '}{c.fix}")
    failed = [c for c in checks if c.status == "fail"]
    lines.append("")
    lines.append(f"{len(failed)} to fix." if failed else "All good.")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    checks, path = asyncio.run(run_checks(Path(args.factory), live=args.live, quick=args.quick))
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"factory": str(path), "ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render(checks, path))
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("doctor", help="check git, the sandbox, the factory, its products, the store, the key and the model")
    factory_arg(p)
    p.add_argument("--live", action="store_true", help="also send each role's model one message of one output token")
    p.add_argument("--quick", action="store_true", help="do not run the products' test commands")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_doctor)


__all__ = ["Check", "run_checks", "render", "cmd_doctor", "register"]
