"""Test doubles at the provider boundary.

- ``ScriptedClient``: an ``LLMClient`` answering from a list or a function (like pydantic-ai's
  ``FunctionModel``); wrap it in ``RecordingClient(..., synthetic=True)`` to produce synthetic
  cassettes.
- ``FakeProviderServer`` (from ``llm.fakeserver``): a local server speaking the providers' wire
  formats, for running the real SDKs.
- ``network_guard()``: refuses socket connections to anything but loopback.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from llm.errors import LLMError
from llm.fakeserver import (
    ANTHROPIC_ROUTE,
    OPENAI_ROUTE,
    FakeProviderServer,
    FakeReply,
    ReceivedRequest,
    anthropic_error,
    anthropic_message,
    openai_completion,
    openai_error,
)
from llm.types import LLMRequest, LLMResponse, Usage

__all__ = [
    "ANTHROPIC_ROUTE",
    "OPENAI_ROUTE",
    "FakeProviderServer",
    "FakeReply",
    "NetworkBlockedError",
    "ReceivedRequest",
    "ScriptedAnswer",
    "ScriptedClient",
    "anthropic_error",
    "anthropic_message",
    "network_guard",
    "openai_completion",
    "openai_error",
]

ScriptedAnswer = LLMResponse | str | dict[str, Any]


class ScriptedClient:
    """Answers from a script: a sequence (one answer per call, in order) or a function.

    A ``str`` answer is the raw text, a ``dict`` is dumped as JSON, an ``LLMResponse`` is used
    as is (its provider and model are filled in when empty). ``requests`` records every
    request, so tests can assert on prompts.
    """

    def __init__(
        self,
        script: Sequence[ScriptedAnswer] | Callable[[LLMRequest], ScriptedAnswer],
        *,
        provider: str = "scripted",
        model: str = "scripted",
        usage: Usage | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.requests: list[LLMRequest] = []
        self.closed = 0  # aclose() calls: whoever opened the client must close it
        self._usage = usage or Usage()
        self._function = script if callable(script) else None
        self._answers = list(script) if not callable(script) else []

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        if self._function is not None:
            answer = self._function(request)
        else:
            index = len(self.requests) - 1
            if index >= len(self._answers):
                raise LLMError(
                    f"ScriptedClient: call {index + 1} but only {len(self._answers)} "
                    "answers were scripted"
                )
            answer = self._answers[index]
        return self._to_response(answer)

    async def aclose(self) -> None:
        self.closed += 1

    def _to_response(self, answer: ScriptedAnswer) -> LLMResponse:
        if isinstance(answer, LLMResponse):
            return answer.model_copy(
                update={
                    "provider": answer.provider or self.provider,
                    "model": answer.model or self.model,
                }
            )
        text = answer if isinstance(answer, str) else json.dumps(answer)
        return LLMResponse(
            text=text,
            stop_reason="end",
            usage=self._usage,
            model=self.model,
            provider=self.provider,
        )


class NetworkBlockedError(RuntimeError):
    """A test tried to reach a non-loopback address."""


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):
        # AF_UNIX paths are local by definition.
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def network_guard() -> Iterator[None]:
    """Within the block, connecting a socket anywhere but loopback raises.

    A RuntimeError rather than an OSError on purpose: HTTP clients turn OSErrors into
    retriable connection errors, which would hide the cause behind a retry loop.
    """
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            raise NetworkBlockedError(f"network access to {address!r} is blocked in tests")
        original_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_loopback(address):
            raise NetworkBlockedError(f"network access to {address!r} is blocked in tests")
        return original_connect_ex(self, address)

    # connect/connect_ex are inherited from _socket.socket; shadow them on socket.socket and
    # restore exactly what was there (usually nothing) afterwards.
    saved = {name: vars(socket.socket).get(name) for name in ("connect", "connect_ex")}
    setattr(socket.socket, "connect", guarded_connect)  # noqa: B010
    setattr(socket.socket, "connect_ex", guarded_connect_ex)  # noqa: B010
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(socket.socket, name)
            else:
                setattr(socket.socket, name, value)
