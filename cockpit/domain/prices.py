"""Prices and usage arithmetic: what a call costs, and what to reserve before making it.

Pure: the price table is data handed in (see cockpit/data/prices.toml), so a
price change is an edit to a file, never to code.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import Refused

_PER_TOKEN = 1_000_000


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float | None = Field(None, ge=0)
    cache_write_1h: float | None = Field(None, ge=0)
    cache_read: float | None = Field(None, ge=0)
    assumed: bool = False

    @property
    def write_5m(self) -> float:
        return self.cache_write_5m if self.cache_write_5m is not None else self.input * 1.25

    @property
    def write_1h(self) -> float:
        return self.cache_write_1h if self.cache_write_1h is not None else self.input * 2.0

    @property
    def read(self) -> float:
        return self.cache_read if self.cache_read is not None else self.input * 0.1


class Usage(BaseModel):
    """Token counts as the API reports them (input_tokens excludes cache reads and writes)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class PriceTable(BaseModel):
    as_of: str
    models: dict[str, ModelPrice]

    def price(self, model: str) -> ModelPrice:
        try:
            return self.models[model]
        except KeyError:
            raise Refused(
                f"no price for model {model!r}: add it under [prices.\"{model}\"] in factory.toml "
                f"(input and output USD per million tokens)"
            ) from None

    def cost(self, model: str, usage: Usage) -> float:
        p = self.price(model)
        write_1h = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
        write_5m = usage.cache_creation_input_tokens - write_1h
        usd = (
            usage.input_tokens * p.input
            + usage.output_tokens * p.output
            + write_5m * p.write_5m
            + write_1h * p.write_1h
            + usage.cache_read_input_tokens * p.read
        ) / _PER_TOKEN
        return round(usd, 9)

    def reservation(self, model: str, input_estimate: int, max_tokens: int) -> float:
        """The most a call can cost: every input token at the dearest rate that may apply, plus max_tokens."""
        p = self.price(model)
        dearest_in = max(p.input, p.write_5m, p.write_1h)
        return round((input_estimate * dearest_in + max_tokens * p.output) / _PER_TOKEN, 9)

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> "PriceTable":
        models = dict(self.models)
        for name, entry in overrides.items():
            models[name] = ModelPrice.model_validate(entry)
        return PriceTable(as_of=self.as_of, models=models)


def default_prices() -> PriceTable:
    text = resources.files("cockpit.data").joinpath("prices.toml").read_text(encoding="utf-8")
    return PriceTable.model_validate(tomllib.loads(text))
