"""Exceptions of the LLM layer.

::

    LLMError
     ├── LLMConfigError      missing API key or SDK; the message names the variable or the
     │                       exact ``pip install`` to run
     ├── LLMAPIError         the provider failed after the SDK's own retries (status_code,
     │    │                  retriable); raised ``from`` the SDK exception
     │    └── LLMTimeoutError    no answer within the client's timeout
     ├── ReplayMissError     a replay cassette has no (more) answers for a request
     └── LLMOutputError      the model answered, but the answer is unusable (raw_body kept);
                             raised by callers that parse ``LLMResponse.text``

SDK exceptions never escape this package: each client maps them at its boundary. Refusals and
truncation are not exceptions: they are values of ``LLMResponse.stop_reason``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LLMAPIError",
    "LLMConfigError",
    "LLMError",
    "LLMOutputError",
    "LLMTimeoutError",
    "ReplayMissError",
    "from_sdk_error",
]


class LLMError(Exception):
    """Base of every error raised by ``llm``."""


class LLMConfigError(LLMError):
    """The client cannot be built: a missing key, SDK, or an inconsistent option."""


class LLMAPIError(LLMError):
    """The provider call failed once the SDK had used up its retries.

    ``retriable`` says whether a later attempt could succeed (rate limit, overload, server
    error, connection failure), so a caller can fall back for this step instead of aborting.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        retriable: bool = False,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.retriable = retriable
        self.request_id = request_id


class LLMTimeoutError(LLMAPIError):
    """No complete answer arrived within the configured timeout (after the SDK's retries)."""

    def __init__(self, message: str, *, provider: str, timeout_s: float | None = None) -> None:
        super().__init__(message, provider=provider, retriable=True)
        self.timeout_s = timeout_s


class ReplayMissError(LLMError):
    """The cassette holds no answer for this request; ``key`` and ``description`` say which."""

    def __init__(self, key: str, description: str, *, hint: str = "") -> None:
        message = f"no recorded answer for request key {key[:16]}… ({description})"
        if hint:
            message = f"{message}; {hint}"
        super().__init__(message)
        self.key = key
        self.description = description


class LLMOutputError(LLMError):
    """The model's output could not be used (invalid JSON, schema violation, truncation)."""

    def __init__(self, message: str, *, raw_body: str) -> None:
        super().__init__(message)
        self.raw_body = raw_body


def from_sdk_error(exc: Exception, sdk: Any, *, provider: str, timeout_s: float) -> LLMAPIError:
    """Map an `anthropic` or `openai` SDK exception (raised after the SDK's own retries) to
    ours. Both SDKs share the class names used here; `sdk` is the SDK module."""
    if isinstance(exc, sdk.APITimeoutError):
        return LLMTimeoutError(
            f"{provider}: no answer within {timeout_s}s (after SDK retries)",
            provider=provider,
            timeout_s=timeout_s,
        )
    if isinstance(exc, sdk.APIConnectionError):
        return LLMAPIError(
            f"{provider}: connection failed: {exc}", provider=provider, retriable=True
        )
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        return LLMAPIError(
            f"{provider}: HTTP {status}: {exc.message}",
            provider=provider,
            status_code=status,
            retriable=status in (408, 409, 429) or status >= 500,
            request_id=exc.request_id,
        )
    # e.g. a 200 whose body does not parse: not worth retrying.
    return LLMAPIError(f"{provider}: {getattr(exc, 'message', exc)}", provider=provider)
