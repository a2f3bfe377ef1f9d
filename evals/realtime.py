"""Run a live client's calls in real time while a mission runs in virtual time.

The eval harness runs missions on a virtual-time loop (`evals.vtime`) that jumps to the next
timer when no I/O is ready. A live provider's HTTP call awaited there loses that race: the
SDK's own timeout timer is the next one, so every call "times out" after 0 s of real time.
`RealTimeClient` runs the inner client on its own thread and real event loop and blocks the
virtual loop until the answer is in: a model call then takes no virtual time, exactly as its
replay does, so a recorded mission and its replay follow the same timeline.
"""

from __future__ import annotations

import asyncio
import threading

from llm.base import LLMClient
from llm.types import LLMRequest, LLMResponse

__all__ = ["RealTimeClient"]


class RealTimeClient:
    """Wraps a live ``LLMClient``; exposes the inner client's attributes for provenance."""

    def __init__(self, inner: LLMClient) -> None:
        self.inner = inner
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llm-realtime", daemon=True
        )
        self._thread.start()

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def model_sha256(self) -> str | None:
        digest = getattr(self.inner, "model_sha256", None)
        return digest if isinstance(digest, str) else None

    async def complete(self, request: LLMRequest) -> LLMResponse:
        # Blocking on purpose: the virtual clock must not move while the model answers.
        return asyncio.run_coroutine_threadsafe(self.inner.complete(request), self._loop).result()

    async def aclose(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.inner.aclose(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
