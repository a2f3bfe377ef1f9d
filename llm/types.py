"""Provider-neutral request and response models for the LLM layer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LLMRequest",
    "LLMResponse",
    "Message",
    "Role",
    "StopReason",
    "SystemBlock",
    "Usage",
]

Role = Literal["user", "assistant"]
StopReason = Literal["end", "max_tokens", "refusal", "other"]


class SystemBlock(BaseModel):
    """One block of the system prompt.

    Put static blocks (``cache=True``) first: provider prompt caches match on a prefix, so a
    dynamic block placed before a static one would make the static one uncacheable.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    cache: bool = False


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    text: str


class LLMRequest(BaseModel):
    """Everything that determines a model's answer, and nothing about how it is transported.

    Timeouts, retries, keys and base URLs belong to the client, so that the replay key (see
    ``llm.replay.request_key``) is a function of this object plus provider and model only.
    ``temperature`` lives here rather than on the client for the same reason.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: list[SystemBlock] = Field(default_factory=list)
    messages: list[Message] = Field(min_length=1)
    json_schema: dict[str, Any] | None = None
    # Both providers restrict tool / schema names to this alphabet.
    schema_name: str = Field(default="output", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    max_tokens: int = Field(default=1024, gt=0)
    temperature: float | None = None
    # The trial seed: always part of the replay key (K trials replay K answers); sent only to
    # providers that accept one.
    seed: int | None = None
    # Labels such as prompt_hash; they describe the request but do not change the answer.
    metadata: dict[str, str] = Field(default_factory=dict)

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""


class Usage(BaseModel):
    """Token counts of one call (or a sum of calls).

    ``input_tokens`` counts uncached input only (Anthropic's convention); OpenAI's
    ``prompt_tokens`` includes cached tokens, so its client subtracts them. Each token is then
    counted in exactly one bucket, which is what pricing needs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        cached = self.cache_read_tokens + self.cache_write_tokens
        return self.input_tokens + self.output_tokens + cached

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )

    def __radd__(self, other: object) -> Usage:
        # Lets sum(usages) work: sum() starts from the int 0.
        if other == 0:
            return self
        return NotImplemented


class LLMResponse(BaseModel):
    """A model's answer. ``text`` is the raw output (for structured requests: the JSON text)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    stop_reason: StopReason = "end"
    # The provider's own stop/finish reason, kept for diagnosis.
    raw_stop_reason: str | None = None
    refusal: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    model: str = ""
    provider: str = ""
    request_id: str | None = None
