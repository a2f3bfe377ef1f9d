"""Build an ``LLMClient`` from plain settings (provider name, model, transport options).

SDKs are imported only for the provider asked for, so a missing one is an ``LLMConfigError``
naming the ``pip install`` to run, and replay needs neither SDK nor key.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Literal, get_args

from llm.base import LLMClient
from llm.errors import LLMConfigError

__all__ = ["PROVIDERS", "Provider", "build_client"]

logger = logging.getLogger(__name__)

Provider = Literal["anthropic", "openai", "openai-compatible", "ollama", "local", "replay"]
PROVIDERS: tuple[str, ...] = get_args(Provider)

# Ollama's OpenAI-compatible endpoint on its default port.
_OLLAMA_BASE_URL = "http://127.0.0.1:11434/v1"
_SDK_PACKAGES = {"anthropic": "anthropic>=0.40", "openai": "openai>=1.50"}


def _require_sdk(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise LLMConfigError(
            f"the {module} SDK is not installed: run `pip install '{_SDK_PACKAGES[module]}'`"
        )


def build_client(
    provider: str,
    model: str = "",
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    structured_output: Literal["tool", "native"] = "tool",
    cassette: Path | None = None,
    record: bool = False,
    synthetic: bool = False,
    model_path: Path | None = None,
) -> LLMClient:
    """A client for ``provider``.

    - ``anthropic``: Claude; key from ``ANTHROPIC_API_KEY``.
    - ``openai``: OpenAI; key from ``OPENAI_API_KEY``.
    - ``openai-compatible``: any Chat Completions server at ``base_url`` (or
      ``OPENAI_BASE_URL``); key optional.
    - ``ollama``: ``openai-compatible`` with Ollama's default local URL.
    - ``local``: llama.cpp's ``llama-server``, started on ``model_path`` (default: the
      SmolLM2 GGUF ``.ci/llama-setup`` caches) and stopped by ``aclose``, or the one running
      at ``base_url``; ``model`` defaults to the GGUF's file name.
    - ``replay``: answers from ``cassette`` (provider and model come from the cassette).

    With ``record=True`` a live client is wrapped in a ``RecordingClient`` writing to
    ``cassette``. Temperature and seed are not here: they change the answer, so they travel
    in each ``LLMRequest`` where the replay key sees them.
    """
    if provider not in PROVIDERS:
        raise LLMConfigError(f"unknown LLM provider {provider!r}; expected one of {PROVIDERS}")
    if provider == "replay":
        if cassette is None:
            raise LLMConfigError("provider 'replay' needs a cassette path")
        from llm.replay import ReplayClient

        return ReplayClient(cassette)
    if provider == "local":
        _require_sdk("openai")
        from llm.local import LocalClient

        client: LLMClient = LocalClient(
            model, model_path=model_path, base_url=base_url, timeout=timeout
        )
    elif not model:
        raise LLMConfigError(f"provider {provider!r} needs a model name")
    else:
        client = _build_live(provider, model, base_url, timeout, max_retries, structured_output)
    if record:
        if cassette is None:
            raise LLMConfigError("record=True needs a cassette path to write to")
        from llm.replay import RecordingClient

        logger.info("recording %s/%s answers to %s", provider, model, cassette)
        return RecordingClient(client, cassette, synthetic=synthetic)
    return client


def _build_live(
    provider: str,
    model: str,
    base_url: str | None,
    timeout: float,
    max_retries: int,
    structured_output: Literal["tool", "native"],
) -> LLMClient:
    if provider == "anthropic":
        _require_sdk("anthropic")
        from llm.anthropic import AnthropicClient

        return AnthropicClient(
            model,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            structured_output=structured_output,
        )
    _require_sdk("openai")
    from llm.openai import OpenAIClient

    if provider == "ollama":
        base_url = base_url or _OLLAMA_BASE_URL
    return OpenAIClient(
        model,
        provider="openai" if provider == "openai" else "openai-compatible",
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
    )
