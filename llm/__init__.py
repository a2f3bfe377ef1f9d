"""Provider-neutral LLM layer: one client protocol over Anthropic, OpenAI and compatible
servers, structured output, usage and pricing, record/replay, and test doubles.

The name ``llm`` clashes with an unrelated PyPI package; this one is Reaper's. Provider
clients load lazily (``llm.AnthropicClient``, ``llm.OpenAIClient``) so importing ``llm`` needs
neither SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm.base import LLMClient
from llm.errors import (
    LLMAPIError,
    LLMConfigError,
    LLMError,
    LLMOutputError,
    LLMTimeoutError,
    ReplayMissError,
)
from llm.factory import PROVIDERS, build_client
from llm.pricing import DEFAULT_PRICES, CostEstimate, ModelPrice, PriceTable, cost, estimate
from llm.replay import RecordingClient, ReplayClient, load_cassette, request_key
from llm.types import LLMRequest, LLMResponse, Message, StopReason, SystemBlock, Usage

if TYPE_CHECKING:
    from llm.anthropic import AnthropicClient
    from llm.openai import OpenAIClient

__all__ = [
    "DEFAULT_PRICES",
    "PROVIDERS",
    "AnthropicClient",
    "CostEstimate",
    "LLMAPIError",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMOutputError",
    "LLMRequest",
    "LLMResponse",
    "LLMTimeoutError",
    "Message",
    "ModelPrice",
    "OpenAIClient",
    "PriceTable",
    "RecordingClient",
    "ReplayClient",
    "ReplayMissError",
    "StopReason",
    "SystemBlock",
    "Usage",
    "build_client",
    "cost",
    "estimate",
    "load_cassette",
    "request_key",
]


def __getattr__(name: str) -> Any:
    # Lazy so that `import llm` works without the provider SDKs installed.
    if name == "AnthropicClient":
        from llm.anthropic import AnthropicClient

        return AnthropicClient
    if name == "OpenAIClient":
        from llm.openai import OpenAIClient

        return OpenAIClient
    raise AttributeError(f"module 'llm' has no attribute {name!r}")
