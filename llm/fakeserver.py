"""A local HTTP server speaking the Anthropic Messages and OpenAI Chat Completions formats.

Tests point the real SDKs at it through ``base_url``, so the SDKs run their real HTTP, retry
and parsing code. Each route has a queue of scripted ``FakeReply`` values; every request
received is recorded. It binds 127.0.0.1 on an ephemeral port and runs in a thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "ANTHROPIC_ROUTE",
    "OPENAI_ROUTE",
    "FakeProviderServer",
    "FakeReply",
    "ReceivedRequest",
    "anthropic_error",
    "anthropic_message",
    "openai_completion",
    "openai_error",
]

logger = logging.getLogger(__name__)

ANTHROPIC_ROUTE = "/v1/messages"
OPENAI_ROUTE = "/v1/chat/completions"


@dataclass(frozen=True)
class FakeReply:
    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to hold the answer, to exercise client timeouts.
    delay_s: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def anthropic_message(
    *,
    tool_input: dict[str, Any] | None = None,
    tool_name: str = "output",
    text: str | None = None,
    stop_reason: str | None = None,
    model: str = "claude-haiku-4-5-20251001",
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_read: int = 0,
    cache_write: int = 0,
    stop_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Messages API response body as the API sends it."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    if tool_input is not None:
        content.append(
            {"type": "tool_use", "id": "toolu_01", "name": tool_name, "input": tool_input}
        )
    if stop_reason is None:
        stop_reason = "tool_use" if tool_input is not None else "end_turn"
    return {
        "id": "msg_01fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "stop_details": stop_details,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        },
    }


def anthropic_error(status: int, kind: str = "api_error", message: str = "fake") -> FakeReply:
    return FakeReply(
        status=status,
        body={"type": "error", "error": {"type": kind, "message": message}},
        # Keep SDK backoff short in tests: retry-after-ms is honoured when positive.
        headers={"retry-after-ms": "5"},
    )


def openai_completion(
    *,
    content: str | None = None,
    refusal: str | None = None,
    finish_reason: str = "stop",
    model: str = "gpt-4o-2024-08-06",
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cached_tokens: int = 0,
) -> dict[str, Any]:
    """A Chat Completions response body as the API sends it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        },
    }


def openai_error(status: int, message: str = "fake") -> FakeReply:
    return FakeReply(
        status=status,
        body={"error": {"message": message, "type": "server_error", "code": None}},
        headers={"retry-after-ms": "5"},
    )


class FakeProviderServer:
    """Scriptable provider endpoint; use as a (sync) context manager or start()/stop().

    ``anthropic_base_url`` and ``openai_base_url`` are what to pass as ``base_url``. A request
    on a route with an empty queue gets a 500 with ``x-should-retry: false`` and an error body
    saying so, so a test that under-scripts fails fast and clearly.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[FakeReply]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[ReceivedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    def push(self, route: str, *replies: FakeReply | dict[str, Any]) -> None:
        """Queue replies for ``route``; a dict is a 200 JSON body."""
        with self._lock:
            queue = self._queues.setdefault(route, deque())
            for reply in replies:
                queue.append(reply if isinstance(reply, FakeReply) else FakeReply(body=reply))

    def requests_to(self, route: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == route]

    def start(self) -> FakeProviderServer:
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; safe to call twice (a test may stop it early to prove it unused)."""
        if self._stopping.is_set():
            return
        # Release handlers still holding a delayed reply, then stop serving.
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _next_reply(self, request: ReceivedRequest) -> FakeReply:
        with self._lock:
            self.requests.append(request)
            queue = self._queues.get(request.path)
            if queue:
                return queue.popleft()
        return FakeReply(
            status=500,
            body={"error": {"type": "fake_server", "message": f"no reply for {request.path}"}},
            headers={"x-should-retry": "false"},
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                try:
                    body: Any = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw
                received = ReceivedRequest(
                    method="POST",
                    path=self.path.split("?", 1)[0],
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = fake._next_reply(received)
                if reply.delay_s and fake._stopping.wait(reply.delay_s):
                    return
                payload = (
                    reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                ).encode("utf-8")
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.send_header("request-id", "req_fake")
                    self.send_header("x-request-id", "req_fake")
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (timeout test); nothing left to answer.
                    logger.debug("client closed the connection before the reply")

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("fake provider: " + format, *args)

        return Handler
