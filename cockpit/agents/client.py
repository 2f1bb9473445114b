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


def make_client(config: FactoryConfig) -> ModelClient:
    """Build the client for this factory. The API key is read by the SDK, never stored by us."""
    timeout = config.model.timeout_s
    if not use_scripted(config):
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise RuntimeError("[model] mode = \"api\" but ANTHROPIC_API_KEY is not set: export it, or use mode = \"auto\"")
        # base_url: the SDK honours ANTHROPIC_BASE_URL itself
        return ModelClient(anthropic.AsyncAnthropic(timeout=timeout, max_retries=config.model.max_retries), "api")
    scen = config.scenarios_path
    paths = [scen] if scen.exists() else []
    model = ScriptedModel.from_paths(paths, chunk_delay_s=config.model.chunk_delay_s)
    server = ScriptedModelServer(model)
    base_url = server.start()
    client = anthropic.AsyncAnthropic(api_key="scripted-model-no-key", base_url=base_url, timeout=timeout,
                                      max_retries=config.model.max_retries)
    return ModelClient(client, "scripted", server)
