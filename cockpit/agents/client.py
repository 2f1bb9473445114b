"""The model client factory: the real API when a key is set, else the scripted model on 127.0.0.1.

Nothing else differs between the two: both are `anthropic.AsyncAnthropic`, so
the SDK parses real wire bytes either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import anthropic

from ..config import FactoryConfig
from .scripted import ScriptedModel, ScriptedModelServer


# Why a task blocks when, offline, the scripted model had nothing to say to its agent: no model worked on it.
NO_MODEL = "no model"
NO_MODEL_HINT = "no model: set ANTHROPIC_API_KEY (or write a scenario for the offline scripted model)"


def offline_reason(config: FactoryConfig) -> str | None:
    """Why this factory runs on the scripted model, or None when it uses the API; shown in the header and doctor."""
    if not use_scripted(config):
        return None
    if config.model.mode == "scripted":
        return '[model] mode = "scripted"'
    return "no ANTHROPIC_API_KEY"


@dataclass
class ModelClient:
    client: anthropic.AsyncAnthropic
    mode: str  # "api" or "scripted"
    server: ScriptedModelServer | None = None

    async def close(self) -> None:
        await self.client.close()
        if self.server is not None:
            self.server.stop()


def use_scripted(config: FactoryConfig) -> bool:
    if config.model.mode == "scripted":
        return True
    if config.model.mode == "api":
        return False
    return not os.environ.get("ANTHROPIC_API_KEY")


# Connecting is quick or it is not happening: fail fast and let the SDK's retries (with
# backoff, honouring retry-after) try again, rather than wait out the whole request timeout.
CONNECT_TIMEOUT_S = 10.0


def request_timeout(timeout_s: float) -> anthropic.Timeout:
    """`timeout_s` for reading, writing and the pool (a stream's gap between events counts as a read)."""
    return anthropic.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))


def make_client(config: FactoryConfig, *, timeout_s: float | None = None, max_retries: int | None = None) -> ModelClient:
    """Build the client for this factory. The API key is read by the SDK, never stored by us.

    `timeout_s`/`max_retries` override [model] for callers that must answer quickly (doctor)."""
    timeout = request_timeout(config.model.timeout_s if timeout_s is None else timeout_s)
    retries = config.model.max_retries if max_retries is None else max_retries
    if not use_scripted(config):
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise RuntimeError("[model] mode = \"api\" but ANTHROPIC_API_KEY is not set: export it, or use mode = \"auto\"")
        # base_url: the SDK honours ANTHROPIC_BASE_URL itself
        return ModelClient(anthropic.AsyncAnthropic(timeout=timeout, max_retries=retries), "api")
    scen = config.scenarios_path
    paths = [scen] if scen.exists() else []
    model = ScriptedModel.from_paths(paths, chunk_delay_s=config.model.chunk_delay_s)
    server = ScriptedModelServer(model)
    base_url = server.start()
    client = anthropic.AsyncAnthropic(api_key="scripted-model-no-key", base_url=base_url, timeout=timeout,
                                      max_retries=retries)
    return ModelClient(client, "scripted", server)
