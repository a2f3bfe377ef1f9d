"""GPT models and OpenAI-compatible servers through the official ``openai`` SDK.

One client serves OpenAI and any server speaking Chat Completions (Ollama, vLLM, llama.cpp)
by ``base_url``. Structured output uses ``response_format`` ``json_schema`` with
``strict: true``. Retries and backoff are the SDK's; this module adds no retry loop.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Literal

import openai
from openai.types.chat import ChatCompletion

from llm.errors import LLMAPIError, LLMConfigError, from_sdk_error
from llm.types import LLMRequest, LLMResponse, StopReason, Usage

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "OpenAIClient"]

logger = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
# Local servers ignore the key, but the SDK refuses to build a client without one.
_PLACEHOLDER_KEY = "not-needed"

_FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end",
    "tool_calls": "end",
    "function_call": "end",
    "length": "max_tokens",
    "content_filter": "refusal",
}


class OpenAIClient:
    """``LLMClient`` for the Chat Completions API.

    ``provider`` is ``"openai"`` or ``"openai-compatible"``; the latter makes the key optional
    (when a base URL is known) and sends ``max_tokens`` instead of ``max_completion_tokens``,
    which OpenAI's reasoning models require but older compatible servers do not know.
    """

    def __init__(
        self,
        model: str,
        *,
        provider: Literal["openai", "openai-compatible"] = "openai",
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        strict: bool = True,
        extra_body: dict[str, Any] | None = None,
        api_key: str | None = None,
    ) -> None:
        # The only place the key is read; `api_key` given (a keyless local server's
        # placeholder) means the variable is not read, so a user's key stays with OpenAI.
        api_key = api_key or os.environ.get(API_KEY_ENV)
        if not api_key:
            # The SDK itself honours OPENAI_BASE_URL; read it only to decide if a key is needed.
            if provider == "openai-compatible" and (base_url or os.environ.get(BASE_URL_ENV)):
                api_key = _PLACEHOLDER_KEY
            else:
                raise LLMConfigError(
                    f"{API_KEY_ENV} is not set; export it to use provider {provider!r}"
                    + (
                        f" (or set base_url / {BASE_URL_ENV} for a local server)"
                        if provider == "openai-compatible"
                        else ""
                    )
                )
        self.provider = provider
        self.model = model
        self.timeout = timeout
        self.strict = strict
        # Server-specific request fields (e.g. llama-server's cache_prompt); not answer-relevant.
        self.extra_body = extra_body
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        kwargs = self._build_kwargs(request)
        started = time.perf_counter()
        try:
            completion = await self._client.chat.completions.create(**kwargs)
        except openai.APIError as exc:
            raise from_sdk_error(
                exc, openai, provider=self.provider, timeout_s=self.timeout
            ) from exc
        latency = time.perf_counter() - started
        return self._to_response(completion, latency)

    async def aclose(self) -> None:
        await self._client.close()

    def _build_kwargs(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if request.system:
            # OpenAI caches prompt prefixes automatically; keeping the static blocks first in
            # one system message is all the `cache` flag needs here.
            system_text = "\n\n".join(block.text for block in request.system)
            messages.append({"role": "system", "content": system_text})
        messages.extend({"role": m.role, "content": m.text} for m in request.messages)
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.provider == "openai":
            kwargs["max_completion_tokens"] = request.max_tokens
        else:
            kwargs["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        if request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.json_schema,
                    "strict": self.strict,
                },
            }
        return kwargs

    def _to_response(self, completion: ChatCompletion, latency: float) -> LLMResponse:
        if not completion.choices:
            raise LLMAPIError(f"{self.provider}: response has no choices", provider=self.provider)
        choice = completion.choices[0]
        message = choice.message
        raw_stop: str | None = choice.finish_reason
        # Any other finish (a server's own reason, or none) did not end the answer normally:
        # treat it as cut off, so a structured answer is never parsed as if complete.
        stop_reason: StopReason = _FINISH_REASONS.get(raw_stop or "", "max_tokens")
        refusal = message.refusal
        if refusal is not None:
            # OpenAI reports a refusal with HTTP 200 and finish_reason "stop".
            stop_reason = "refusal"
            logger.info(
                "%s refused (model %s, id %s)", self.provider, completion.model, completion.id
            )
        return LLMResponse(
            text=message.content or "",
            stop_reason=stop_reason,
            raw_stop_reason=raw_stop,
            refusal=refusal,
            usage=_usage(completion),
            latency_s=latency,
            model=completion.model,
            provider=self.provider,
            request_id=completion._request_id or completion.id,
        )


def _usage(completion: ChatCompletion) -> Usage:
    usage = completion.usage
    if usage is None:
        # Some compatible servers omit usage; zero is honest and keeps cost at 0.
        return Usage()
    details = usage.prompt_tokens_details
    cache_read = (details.cached_tokens or 0) if details else 0
    cache_write = (details.cache_write_tokens or 0) if details else 0
    return Usage(
        # prompt_tokens includes cached tokens; Usage.input_tokens counts uncached input only.
        input_tokens=max(usage.prompt_tokens - cache_read - cache_write, 0),
        output_tokens=usage.completion_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
