"""Claude through the official ``anthropic`` SDK (Messages API).

Structured output defaults to a forced tool call, which every Claude model supports; the API's
native JSON-schema output (``output_config.format``) is available as ``structured_output=
"native"``. Retries and backoff are the SDK's (429, 5xx and 529, honouring ``retry-after``):
this module adds no retry loop of its own.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from typing import Any, Literal

import anthropic
from anthropic.types import Message as AnthropicMessage
from anthropic.types import TextBlockParam, ToolParam

from llm.errors import LLMConfigError, from_sdk_error
from llm.types import LLMRequest, LLMResponse, StopReason, Usage

__all__ = ["API_KEY_ENV", "AnthropicClient", "StructuredMode"]

logger = logging.getLogger(__name__)

API_KEY_ENV = "ANTHROPIC_API_KEY"
StructuredMode = Literal["tool", "native"]

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end",
    "tool_use": "end",
    "stop_sequence": "end",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "refusal": "refusal",
}


def _sdk_has_native_output() -> bool:
    # Older SDKs lack output_config; look at the signature rather than pinning a version.
    from anthropic.resources.messages import AsyncMessages

    return "output_config" in inspect.signature(AsyncMessages.create).parameters


class AnthropicClient:
    """``LLMClient`` for Claude models."""

    provider = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        structured_output: StructuredMode = "tool",
    ) -> None:
        # The only place the key is read. Passing it explicitly also stops the SDK from falling
        # back to profiles or federation files, so what is used is what the error names.
        api_key = os.environ.get(API_KEY_ENV)
        if not api_key:
            raise LLMConfigError(f"{API_KEY_ENV} is not set; export it to use provider 'anthropic'")
        if structured_output == "native" and not _sdk_has_native_output():
            raise LLMConfigError(
                "this anthropic SDK has no native JSON-schema output; "
                "run `pip install -U anthropic` or use structured_output='tool'"
            )
        self.model = model
        self.structured_output: StructuredMode = structured_output
        self.timeout = timeout
        # base_url=None lets the SDK honour ANTHROPIC_BASE_URL.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        kwargs = self._build_kwargs(request)
        started = time.perf_counter()
        try:
            message = await self._client.messages.create(**kwargs)
        except anthropic.APIError as exc:
            raise from_sdk_error(
                exc, anthropic, provider=self.provider, timeout_s=self.timeout
            ) from exc
        latency = time.perf_counter() - started
        return self._to_response(request, message, latency)

    async def aclose(self) -> None:
        await self._client.close()

    def _build_kwargs(self, request: LLMRequest) -> dict[str, Any]:
        system: list[TextBlockParam] = [{"type": "text", "text": b.text} for b in request.system]
        cached = [i for i, block in enumerate(request.system) if block.cache]
        if cached:
            # One breakpoint on the last static block caches every block before it too.
            system[cached[-1]]["cache_control"] = {"type": "ephemeral"}
        messages: list[dict[str, str]] = [
            {"role": m.role, "content": m.text} for m in request.messages
        ]
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if system:
            kwargs["system"] = system
        # The installed SDK's Messages API takes neither temperature nor seed (current Claude
        # models fix sampling): both stay in the replay key only.
        if request.json_schema is not None:
            if self.structured_output == "native":
                kwargs["output_config"] = {
                    "format": {"type": "json_schema", "schema": request.json_schema}
                }
            else:
                tool: ToolParam = {
                    "name": request.schema_name,
                    "description": f"Return the answer as a {request.schema_name} object.",
                    "input_schema": request.json_schema,
                }
                kwargs["tools"] = [tool]
                kwargs["tool_choice"] = {"type": "tool", "name": request.schema_name}
        return kwargs

    def _to_response(
        self, request: LLMRequest, message: AnthropicMessage, latency: float
    ) -> LLMResponse:
        texts: list[str] = []
        tool_input: dict[str, object] | None = None
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use" and block.name == request.schema_name:
                tool_input = block.input
        text = json.dumps(tool_input) if tool_input is not None else "".join(texts)
        raw_stop = message.stop_reason
        # An unknown or missing reason (e.g. "pause_turn") means the answer did not end
        # normally: treat it as cut off rather than parse a possibly partial answer.
        stop_reason: StopReason = _STOP_REASONS.get(raw_stop or "", "max_tokens")
        refusal: str | None = None
        if stop_reason == "refusal":
            details = message.stop_details
            refusal = (details.explanation if details else None) or "".join(texts) or "refused"
            logger.info("anthropic refused (model %s, id %s)", message.model, message.id)
        usage = message.usage
        return LLMResponse(
            text=text,
            stop_reason=stop_reason,
            raw_stop_reason=raw_stop,
            refusal=refusal,
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_input_tokens or 0,
                cache_write_tokens=usage.cache_creation_input_tokens or 0,
            ),
            latency_s=latency,
            model=message.model,
            provider=self.provider,
            request_id=message._request_id or message.id,
        )
