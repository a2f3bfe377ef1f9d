"""A local model: llama.cpp's ``llama-server`` behind the OpenAI-compatible client.

``LocalClient`` either starts ``llama-server`` on a free loopback port with a GGUF file (the
SmolLM2-135M-Instruct that ``.ci/llama-setup`` caches, or any ``model_path``) and stops it on
``aclose``, or connects to one already running at ``base_url``. ``llama-server`` implements
``response_format`` ``json_schema`` by grammar-constrained decoding, so the answers of even a
tiny model parse against the schema. Requests go through ``OpenAIClient`` unchanged except for
``cache_prompt``: with one slot, a request sharing the previous one's prefix (system prompt and
catalog first) reuses its KV cache and only the new suffix is evaluated.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import cached_property
from pathlib import Path

from llm.errors import LLMConfigError
from llm.gguf import check_gguf
from llm.llama_server import LlamaServer, default_binary, default_model
from llm.openai import OpenAIClient
from llm.types import LLMRequest, LLMResponse

__all__ = ["LOCAL_API_KEY", "LocalClient", "file_sha256"]

LOCAL_API_KEY = "no-key-local-llama-server"

logger = logging.getLogger(__name__)

_digests: dict[tuple[Path, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The hex sha256 of a model file, memoised per (path, size, mtime): GGUFs are large."""
    stat = path.stat()
    key = (path.resolve(), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _digests[key] = digest.hexdigest()
    return _digests[key]


class LocalClient:
    """``LLMClient`` for a ``llama-server`` this client starts, or one at ``base_url``.

    ``model`` names the answers in cassettes and replay keys; it defaults to the GGUF file's
    stem. ``model_sha256`` (the file's digest, for provenance) is known when the file is.
    """

    provider = "local"

    def __init__(
        self,
        model: str = "",
        *,
        model_path: Path | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 0,
        startup_timeout: float = 60.0,
        ctx_size: int | None = None,
    ) -> None:
        self._server: LlamaServer | None = None
        path = Path(model_path) if model_path else None
        if base_url is None:
            path = path or default_model()
            if not path.is_file():
                raise LLMConfigError(
                    f"no GGUF model at {path}: run `.ci/llama-setup` or pass --model-path"
                )
            check_gguf(path)
            binary = Path(os.environ.get("REAPER_LLAMA_SERVER") or default_binary())
            self._server = LlamaServer(
                binary, path, ctx_size=ctx_size, startup_timeout=startup_timeout
            )
            base_url = self._server.start()
        elif path is not None:
            if not path.is_file():
                raise LLMConfigError(f"no GGUF model at {path}")
            check_gguf(path)
        self.model_path = path
        self.model = model or (path.stem if path else "llama-server")
        self.base_url = base_url
        self._inner = OpenAIClient(
            self.model,
            provider="openai-compatible",
            base_url=base_url.rstrip("/") + "/v1",
            timeout=timeout,
            max_retries=max_retries,
            # llama-server's own default, said explicitly: the stable prefix is evaluated once.
            extra_body={"cache_prompt": True},
            # llama-server needs no key: a user's OPENAI_API_KEY must not be sent to it.
            api_key=LOCAL_API_KEY,
        )

    @cached_property
    def model_sha256(self) -> str | None:
        return file_sha256(self.model_path) if self.model_path else None

    async def complete(self, request: LLMRequest) -> LLMResponse:
        response = await self._inner.complete(request)
        # llama-server echoes the file name it loaded; answers are labelled as this client's.
        return response.model_copy(update={"provider": self.provider, "model": self.model})

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._server is not None:
                self._server.stop()
