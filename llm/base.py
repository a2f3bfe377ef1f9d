"""The client protocol every provider, recorder and test double implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from llm.types import LLMRequest, LLMResponse

__all__ = ["LLMClient"]


@runtime_checkable
class LLMClient(Protocol):
    """An authenticated model endpoint.

    ``complete`` returns refusals and truncation as values (``stop_reason``) and raises only
    ``llm.errors`` exceptions. Transport settings (timeout, retries, key) are fixed when the
    client is built; everything that changes the answer is in the request.
    """

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def complete(self, request: LLMRequest) -> LLMResponse: ...

    async def aclose(self) -> None: ...
