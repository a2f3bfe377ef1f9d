"""USD prices per million tokens, and the cost of a call.

The built-in table is a convenience snapshot of list prices (2025) and goes stale: override it
from config with ``PriceTable.with_overrides``. An unknown model costs 0.0 with
``priced=False`` rather than raising, so a new model never stops a mission; callers show the
flag (e.g. "cost unknown") instead of a misleading zero.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from llm.types import Usage

__all__ = ["DEFAULT_PRICES", "CostEstimate", "ModelPrice", "PriceTable", "cost", "estimate"]

logger = logging.getLogger(__name__)

_MTOK = 1_000_000


class ModelPrice(BaseModel):
    """USD per million tokens in each usage bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


class CostEstimate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: float
    priced: bool
    # The table entry used (a prefix of the model name), or None when unpriced.
    price_key: str | None = None


def _claude(inp: float, out: float) -> ModelPrice:
    # Anthropic: a 5-minute cache write costs 1.25x input, a cache read 0.1x input.
    return ModelPrice(input=inp, output=out, cache_read=inp * 0.1, cache_write=inp * 1.25)


def _gpt(inp: float, out: float, cached: float) -> ModelPrice:
    # OpenAI charges no premium for writing the cache: a write costs plain input.
    return ModelPrice(input=inp, output=out, cache_read=cached, cache_write=inp)


_BUILTIN: dict[str, ModelPrice] = {
    "claude-opus-4-5": _claude(5.0, 25.0),
    "claude-opus-4-1": _claude(15.0, 75.0),
    "claude-opus-4": _claude(15.0, 75.0),
    "claude-sonnet-4-5": _claude(3.0, 15.0),
    "claude-sonnet-4": _claude(3.0, 15.0),
    "claude-3-7-sonnet": _claude(3.0, 15.0),
    "claude-haiku-4-5": _claude(1.0, 5.0),
    "claude-3-5-haiku": _claude(0.8, 4.0),
    "gpt-5": _gpt(1.25, 10.0, 0.125),
    "gpt-5-mini": _gpt(0.25, 2.0, 0.025),
    "gpt-5-nano": _gpt(0.05, 0.40, 0.005),
    "gpt-4.1": _gpt(2.0, 8.0, 0.50),
    "gpt-4.1-mini": _gpt(0.40, 1.60, 0.10),
    "gpt-4o": _gpt(2.50, 10.0, 1.25),
    "gpt-4o-mini": _gpt(0.15, 0.60, 0.075),
}


class PriceTable:
    """Model name → price; a dated snapshot name matches its family by longest prefix."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    def with_overrides(
        self, overrides: Mapping[str, ModelPrice | Mapping[str, float]]
    ) -> PriceTable:
        """A new table with entries added or replaced, e.g. from ``[llm.prices]`` in config."""
        merged = dict(self._prices)
        for name, price in overrides.items():
            merged[name] = price if isinstance(price, ModelPrice) else ModelPrice(**price)
        return PriceTable(merged)

    def lookup(self, model: str) -> tuple[str, ModelPrice] | None:
        if model in self._prices:
            return model, self._prices[model]
        # "claude-sonnet-4-5-20250929" → "claude-sonnet-4-5"; the longest prefix wins so that
        # "gpt-4o-mini-2024-07-18" is not priced as "gpt-4o".
        candidates = [name for name in self._prices if model.startswith(name + "-")]
        if not candidates:
            return None
        best = max(candidates, key=len)
        return best, self._prices[best]

    def estimate(self, model: str, usage: Usage) -> CostEstimate:
        found = self.lookup(model)
        if found is None:
            logger.debug("no price for model %r; cost counted as 0", model)
            return CostEstimate(usd=0.0, priced=False)
        key, price = found
        usd = (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + usage.cache_read_tokens * price.cache_read
            + usage.cache_write_tokens * price.cache_write
        ) / _MTOK
        return CostEstimate(usd=usd, priced=True, price_key=key)

    def cost(self, model: str, usage: Usage) -> float:
        return self.estimate(model, usage).usd


DEFAULT_PRICES = PriceTable(_BUILTIN)


def estimate(model: str, usage: Usage, table: PriceTable = DEFAULT_PRICES) -> CostEstimate:
    return table.estimate(model, usage)


def cost(model: str, usage: Usage, table: PriceTable = DEFAULT_PRICES) -> float:
    """USD cost of ``usage`` on ``model``; 0.0 for an unknown model (see ``estimate``)."""
    return table.cost(model, usage)
