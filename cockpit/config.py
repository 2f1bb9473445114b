"""factory.toml: read with tomllib, validated with pydantic, errors that say file, key, line and fix.

A broken file never starts anything and never writes anything: `load_factory`
raises `ConfigError`, whose message is meant to be printed as it is.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .domain.budget import BudgetLimits
from .domain.notices import parse_clock, parse_quiet_hours
from .domain.prices import ModelPrice, PriceTable, default_prices

DEFAULT_MODEL = "claude-sonnet-5-5"


class ConfigError(Exception):
    """A factory.toml that cannot be used; the message names the file, key, line and fix."""


_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_SHARED_IN_HOME = (".local", ".local/share", ".local/state", ".config", ".cache")
_XDG_VARS = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")


def _homes() -> set[str]:
    """Every user's home that exists (passwd and /home), the cockpit's own included; not the system dirs
    a service user may have as its home (`bin`'s /bin: shown anyway)."""
    import pwd

    found = {os.path.expanduser("~"), *(p.pw_dir for p in pwd.getpwall())}
    if os.path.isdir("/home"):
        found |= {os.path.join("/home", n) for n in os.listdir("/home")}
    homes = set()
    for h in found:
        real = os.path.realpath(h)
        if real != "/" and os.path.isdir(real) and not any(real == s or real.startswith(s + "/") for s in _SYSTEM_DIRS):
            homes.add(real)
    return homes


def too_broad_for_toolchain(path: str) -> str | None:
    """Why `path` may not be shown whole as a toolchain, or None. A home (anyone's: root running the
    cockpit, a CI user's), a directory holding one, ~/.local, ~/.local/share, ~/.config, ~/.cache (and
    the XDG ones) hold keyrings, shell histories, tokens of every tool."""
    real = os.path.realpath(os.path.expanduser(path))
    homes = _homes()
    broad = set(homes)
    for h in homes:
        broad |= {os.path.join(h, rel) for rel in _SHARED_IN_HOME}
    for var in _XDG_VARS:
        if os.environ.get(var):
            broad.add(os.path.realpath(os.environ[var]))
    if real in broad:
        return "is a whole home or one of its shared directories (keyrings, shell histories, every tool's tokens)"
    if real in ("/", "/home", "/etc", "/var", "/opt", "/usr/local", "/srv", "/mnt", "/media", "/run", "/tmp"):
        return "is a system directory that holds far more than one toolchain"
    holds = sorted(h for h in homes if h.startswith(real.rstrip("/") + "/"))
    if holds:
        return f"holds a user's home ({holds[0]}: keyrings, shell histories, every tool's tokens)"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FactorySection(_Strict):
    name: str = "factory"
    store: str = Field("memory/cockpit.db", description="SQLite file, relative to factory.toml")
    worktrees: str = Field("worktrees", description="where task worktrees live, relative to factory.toml")
    rules: str = Field("rules", description="the factory's rules directory, relative to factory.toml")
    max_rounds: int = Field(2, ge=1, le=20, description="builder rounds before a task blocks for the human")
    sandbox: Literal["bwrap", "off"] = Field("bwrap", description="'off' runs agent code unsandboxed (shown)")
    toolchains: list[str] = Field(default_factory=list, description="directories the sandbox shows read-only "
                                  "besides the system ones (e.g. ~/.cargo); `product add` adds what it finds")
    human: str = Field("human:you", description="actor id recorded for the person at the keyboard")

    @field_validator("toolchains")
    @classmethod
    def _not_a_whole_home(cls, dirs: list[str]) -> list[str]:
        for d in dirs:
            why = too_broad_for_toolchain(d)
            if why:
                raise ValueError(f"{d!r} {why}: name the tool's own directory instead (e.g. ~/.cargo, "
                                 "~/.local/share/pnpm, ~/.nvm/versions/node/v20.11.0)")
        return dirs


class LimitsSection(_Strict):
    max_agents: int = Field(6, ge=1, le=256)
    max_agents_per_product: int = Field(2, ge=1, le=64)
    agent_max_turns: int = Field(40, ge=1, le=1000)
    command_timeout_s: float = Field(120.0, gt=0)
    test_timeout_s: float = Field(600.0, gt=0)
    output_cap_bytes: int = Field(64_000, ge=1024)
    tmp_bytes: int = Field(512 << 20, ge=1 << 20, description="each sandboxed command's private /tmp (memory: a tmpfs)")
    agent_nice: int = Field(10, ge=0, le=19, description="CPU niceness of agents' own commands: on a busy machine "
                            "the gates and the cockpit come first; 0: the same as the gates")


class ModelSection(_Strict):
    mode: Literal["auto", "api", "scripted"] = Field(
        "auto", description="auto: the real API when ANTHROPIC_API_KEY is set, else the scripted model")
    scenarios: str = Field("scenarios", description="scripted model scenario files, relative to factory.toml")
    timeout_s: float = Field(600.0, gt=0, description="per-request timeout for the API")
    max_retries: int = Field(4, ge=0, le=20, description="SDK retries on 429/5xx/connection errors")
    chunk_delay_s: float = Field(0.0, ge=0, le=5, description="scripted model: pause between stream events")


class BudgetsSection(_Strict):
    day_usd: float | None = Field(None, ge=0, description="all model spend in one local day; unset: unlimited")
    factory_usd: float | None = Field(None, ge=0, description="all model spend of the factory; unset: unlimited")


class MemorySection(_Strict):
    inject_tokens: int = Field(1500, ge=0, le=50_000, description="token budget of recalled lessons per session")
    fade_days: float = Field(60.0, gt=0, description="a lesson unused this long is no longer recalled (pinned: never)")
    dir: str = Field("memory", description="where `cockpit memory export` writes, relative to factory.toml")


class NotifySection(_Strict):
    """Where notices go (cockpit.domain.notices). The webhook URL may hold a token: it is named here by an
    environment variable or a file outside the repo, never written in factory.toml, the store or a log."""

    webhook_url_env: str | None = Field(None, description="environment variable holding the webhook URL")
    webhook_url_file: str | None = Field(None, description="file holding the webhook URL (outside the repo)")
    timeout_s: float = Field(5.0, gt=0, le=120, description="per-request timeout of a delivery")
    batch_window_s: float = Field(0.0, ge=0, le=3600, description=(
        "notices within this many seconds go as one message listing them; 0: each at once"))
    apprise_urls_env: str | None = Field(None, description=(
        "environment variable holding apprise URLs (Slack, Telegram, Discord, ntfy, email), space separated"))
    apprise_urls_file: str | None = Field(None, description="file holding apprise URLs, one a line (outside the repo)")
    terminal: bool = Field(False, description=(
        "ring the controlling terminal: BEL and an OSC 9 / OSC 777 desktop notice (through tmux too)"))
    desktop: bool = Field(False, description="a desktop notice through notify-send, where a session exists")
    mute: list[str] = Field(default_factory=list, description=(
        "products whose notices wait in the outbox (cockpit notify list) until removed from this list"))
    max_per_minute: int = Field(0, ge=0, le=1000, description=(
        "at most this many messages a minute on each channel; the overflow goes as one message listing them; "
        "0: no limit"))
    quiet_hours: str | None = Field(None, description=(
        'local "HH:MM-HH:MM" (e.g. "22:00-07:00"): notices are held, then sent as one digest at the end'))

    routes: dict[str, list[str]] = Field(default_factory=dict, description=(
        "product -> the channels its notices go to (webhook, terminal, desktop, apprise); "
        "a product not listed: every channel"))
    link_base: str | None = Field(None, description=(
        'where a notice\'s task link points, e.g. "http://myhost:8000" (default: a running `cockpit serve`, '
        "else no link)"))
    landings: bool = Field(False, description="also a notice when a task merges (off: only what needs you)")
    digest: str | None = Field(None, description=(
        'local "HH:MM" (e.g. "18:00"): one message a day from then on summarising it (merged, blocked, spend)'))

    @field_validator("link_base")
    @classmethod
    def _link_base_form(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", v):
            raise ValueError('write it as http://host:port (or https://…), e.g. "http://myhost:8000"')
        return v

    @field_validator("digest")
    @classmethod
    def _digest_form(cls, v: str | None) -> str | None:
        if v is not None:
            parse_clock(v)
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours_form(cls, v: str | None) -> str | None:
        if v is not None:
            parse_quiet_hours(v)
        return v

    def channel_names(self) -> list[str]:
        """The channels this section turns on, by the names `routes` and `cockpit notify test` use."""
        return [name for name, on in (("webhook", self.webhook_url_env or self.webhook_url_file),
                                      ("terminal", self.terminal), ("desktop", self.desktop),
                                      ("apprise", self.apprise_urls_env or self.apprise_urls_file)) if on]

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url_env or self.webhook_url_file or self.terminal or self.apprise_urls_env
                    or self.apprise_urls_file or self.desktop)


class RoleConfig(_Strict):
    model: str = DEFAULT_MODEL
    max_tokens: int = Field(8192, ge=1, le=128_000)


class ProductConfig(_Strict):
    name: str
    path: str = Field(description="path to the product's git repository, relative to factory.toml")
    test_command: str
    main_branch: str = "main"
    budget_usd: float | None = Field(None, ge=0)
    task_budget_usd: float | None = Field(None, ge=0)
    serial: bool = Field(False, description="work this product's tasks one at a time, in queue order")
    protected: list[str] = Field(default_factory=list, description=(
        "more files whose change needs a human (gitignore-like globs), on top of the test harness defaults"))

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError("use letters, digits, '.', '_' or '-' (it names branches and directories)")
        return v

    @field_validator("test_command")
    @classmethod
    def _command_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("give the command that runs the product's tests, e.g. 'python -m pytest -q'")
        return v


class FactoryConfig(_Strict):
    factory: FactorySection = Field(default_factory=FactorySection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    model: ModelSection = Field(default_factory=ModelSection)
    roles: dict[Literal["builder", "reviewer", "breaker"], RoleConfig] = Field(default_factory=dict)
    products: list[ProductConfig] = Field(default_factory=list)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    budgets: BudgetsSection = Field(default_factory=BudgetsSection)
    memory: MemorySection = Field(default_factory=MemorySection)
    notify: NotifySection = Field(default_factory=NotifySection)

    # set by load_factory, not read from the file
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_products(self) -> "FactoryConfig":
        seen: set[str] = set()
        for p in self.products:
            if p.name in seen:
                raise ValueError(f"product name {p.name!r} appears twice; names must be unique")
            seen.add(p.name)
        return self

    @property
    def root(self) -> Path:
        return (self.path.parent if self.path else Path.cwd()).resolve()

    def resolve(self, rel: str) -> Path:
        p = Path(rel).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def scenarios_path(self) -> Path:
        return self.resolve(self.model.scenarios)

    def price_table(self) -> PriceTable:
        return default_prices().with_overrides({k: v.model_dump() for k, v in self.prices.items()})

    def budget_limits(self) -> BudgetLimits:
        """The configured limits the store checks every reservation against (raises come from events)."""
        return BudgetLimits(factory_usd=self.budgets.factory_usd, day_usd=self.budgets.day_usd,
                            product_usd={p.name: p.budget_usd for p in self.products})

    @property
    def store_path(self) -> Path:
        return self.resolve(self.factory.store)

    @property
    def worktrees_path(self) -> Path:
        return self.resolve(self.factory.worktrees)

    @property
    def rules_path(self) -> Path:
        return self.resolve(self.factory.rules)

    @property
    def memory_path(self) -> Path:
        return self.resolve(self.memory.dir)

    def role(self, name: str) -> RoleConfig:
        return self.roles.get(name) or RoleConfig()  # type: ignore[call-overload]

    def product(self, name: str) -> ProductConfig:
        for p in self.products:
            if p.name == name:
                return p
        raise KeyError(name)

    def product_path(self, name: str) -> Path:
        return self.resolve(self.product(name).path).resolve()


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _find_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of the key at `loc` (tomllib gives lines only for syntax errors)."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    idx = next((p for p in loc if isinstance(p, int)), None)
    if not parts:
        return None
    table, key = ".".join(parts[:-1]), parts[-1]
    current, counts, header_line = "", {}, None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.match(r"^(\[\[?)\s*([^\]]+?)\s*\]", s)
        if m:
            current = m.group(2)
            count = counts.get(current, -1) + 1
            counts[current] = count
            here = current == table and (m.group(1) == "[" or idx is None or count == idx)
            if here:
                header_line = n
            if current == ".".join(parts) and idx is None:
                return n
            continue
        if header_line is not None and current == table and re.match(rf"^{re.escape(key)}\s*=", s):
            if m is None and (idx is None or counts.get(current) == idx):
                return n
    return header_line


FACTORY_FILE = "factory.toml"


def closest_models(name: str, known: Iterable[str]) -> list[str]:
    """Every known model name, the likeliest meant by `name` first (difflib's ratio; a typo ranks its model first)."""
    known = sorted(set(known))
    matcher = difflib.SequenceMatcher(b=name.lower())
    ranked = []
    for model in known:
        matcher.set_seq1(model.lower())
        ranked.append((-matcher.ratio(), model))
    return [model for _, model in sorted(ranked)]


def default_rules_dir() -> Path:
    """The repository's own rules/: what a new factory (`cockpit init`, the demo) starts from."""
    return Path(__file__).resolve().parents[1] / "rules"


def load_factory(path: str | Path) -> FactoryConfig:
    """Read and validate a factory.toml; raise ConfigError with a message a person can act on."""
    p = Path(path).expanduser()
    if p.is_dir():  # `--factory ~/factory`: the folder stands for the factory.toml in it
        if not (p / FACTORY_FILE).is_file():
            raise ConfigError(f"{p}: a folder without a {FACTORY_FILE}. Give the file, or create one with "
                              f"'cockpit init {p}'.")
        p = p / FACTORY_FILE
    if not p.exists():
        raise ConfigError(f"{p}: no such file. Create one with 'cockpit init' or try 'cockpit demo'.")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read it ({e}).") from e
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}. Fix the syntax at that line.") from e
    try:
        cfg = FactoryConfig.model_validate(raw)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = tuple(err["loc"])
            key = _key_path(loc)
            line = _find_line(text, loc)
            where = f"{p}:{line}" if line else str(p)
            if err["type"] == "extra_forbidden":
                what = f"unknown key '{key}'. Remove it or check its spelling (see the README's factory.toml reference)."
            elif err["type"] == "missing":
                what = f"key '{key}' is required but missing. Add it."
            else:
                what = f"key '{key}': {err['msg']}. Fix the value."
            msgs.append(f"{where}: {what}")
        raise ConfigError("\n".join(msgs)) from e
    table = cfg.price_table()
    for role in ("builder", "reviewer", "breaker"):
        model = cfg.role(role).model
        if model not in table.models:
            line = _find_line(text, ("roles", role, "model"))
            where = f"{p}:{line}" if line else str(p)
            raise ConfigError(
                f"{where}: key 'roles.{role}.model': no price for model {model!r} (price table of "
                f"{table.as_of}). Use a known model or add [prices.\"{model}\"] with input and output "
                f"USD per million tokens. Known models, closest first: {', '.join(closest_models(model, table.models))}"
            )
    _check_routes(cfg, p, text)
    cfg.path = p.resolve()
    return cfg


def _check_routes(cfg: FactoryConfig, p: Path, text: str) -> None:
    """[notify.routes]: every product is one of [[products]], every channel one that [notify] turns on."""
    products, channels = {x.name for x in cfg.products}, cfg.notify.channel_names()
    for product, names in cfg.notify.routes.items():
        line = _find_line(text, ("notify", "routes", product))
        where = f"{p}:{line}" if line else str(p)
        if product not in products:
            raise ConfigError(f"{where}: key 'notify.routes.{product}': no product {product!r} in [[products]] "
                              f"({', '.join(sorted(products)) or 'none yet'}). Fix the name or remove the route.")
        for name in names:
            if name not in channels:
                raise ConfigError(
                    f"{where}: key 'notify.routes.{product}': no channel {name!r} is configured in [notify] "
                    f"(configured: {', '.join(channels) or 'none'}; the names are webhook, terminal, desktop, "
                    "apprise). Turn it on, or fix the name.")
