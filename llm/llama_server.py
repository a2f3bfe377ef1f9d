"""Start and stop a ``llama-server`` process (llama.cpp) on a free loopback port.

Where ``.ci/llama-setup`` caches the binary and the default model is defined here, once, for
the provider and its tests. The server logs to a file rather than a pipe (a pipe nobody reads
fills up and stalls it); its tail is quoted when it fails to start.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from llm.errors import LLMAPIError, LLMConfigError
from llm.gguf import context_length

__all__ = [
    "LLAMA_VERSION",
    "LlamaServer",
    "cache_dir",
    "default_binary",
    "default_model",
    "resolve_ctx_size",
]

logger = logging.getLogger(__name__)

# The llama-cpp-python sdist whose vendored llama.cpp `.ci/llama-setup` builds.
LLAMA_VERSION = "0.3.36"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
_SETUP_HINT = "run `.ci/llama-setup` (or set REAPER_LLAMA_SERVER)"
_POLL_S = 0.1
DEFAULT_CTX_SIZE = 8192
MIN_CTX_SIZE = 512


def cache_dir() -> Path:
    """The directory `.ci/llama-setup` fills (same rule as the script)."""
    base = os.environ.get("REAPER_LLAMA_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "reaper" / "llama")
    return Path(base) / LLAMA_VERSION


def default_binary() -> Path:
    return cache_dir() / "llama-server"


def default_model() -> Path:
    return cache_dir() / DEFAULT_MODEL_FILE


# llama-server binds `--port 0` to a free port and says which in its log: no port picked here
# and released before it binds, which another process on a busy machine could take first.
_LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:\d+)")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _healthy(url: str) -> bool:
    # 503 while the model loads, 200 once it can answer; refused while not yet listening.
    try:
        with urllib.request.urlopen(url, timeout=2.0) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def resolve_ctx_size(model_path: Path, wanted: int | None) -> int:
    """`wanted` if the model was trained for that much (LLMConfigError otherwise), else the
    model's own context, at most DEFAULT_CTX_SIZE (its KV cache is memory; ask for more)."""
    trained = context_length(model_path)
    if wanted is None:
        return min(trained or DEFAULT_CTX_SIZE, DEFAULT_CTX_SIZE)
    if wanted < MIN_CTX_SIZE:
        raise LLMConfigError(f"--ctx-size {wanted}: at least {MIN_CTX_SIZE} tokens")
    if trained is not None and wanted > trained:
        raise LLMConfigError(
            f"--ctx-size {wanted}: {model_path.name} was trained for {trained} tokens at most"
        )
    return wanted


class LlamaServer:
    """One ``llama-server`` with one slot (so consecutive requests share its prompt cache)."""

    def __init__(
        self,
        binary: Path,
        model_path: Path,
        *,
        ctx_size: int | None = None,
        threads: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise LLMConfigError(f"no llama-server binary at {binary}: {_SETUP_HINT}")
        self.binary = binary
        self.model_path = model_path
        self.ctx_size = resolve_ctx_size(model_path, ctx_size)
        # One core left free: llama.cpp's threads spin at every barrier, so when any other
        # process takes one of their cores, decoding collapses (measured here: 30 tokens/s
        # alone, 0.3 with one busy neighbour on 2 cores), and calls time out.
        self.threads = threads or max(1, min((os.cpu_count() or 1) - 1, 4))
        self.startup_timeout = startup_timeout
        self.base_url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])

    def start(self) -> str:
        """Start the server and wait for /health; return its base URL."""
        self.base_url = ""
        command = [
            str(self.binary),
            "--model",
            str(self.model_path),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ctx-size",
            str(self.ctx_size),
            "--parallel",
            "1",
            "--threads",
            str(self.threads),
            "--no-webui",
        ]
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        # A client dropped without aclose() must not leave the server running.
        weakref.finalize(self, _terminate, self._process)
        self._wait_healthy()
        logger.info(
            "llama-server %s up at %s (pid %d)",
            self.model_path.name,
            self.base_url,
            self._process.pid,
        )
        return self.base_url

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            logger.info("llama-server at %s stopped", self.base_url)
            self._process = None
        self._log.unlink(missing_ok=True)

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"llama-server exited with status {self._process.returncode}")
            # Ready means: its own log names the port it bound, and /health there says 200.
            self.base_url = self.base_url or self._bound_url()
            if self.base_url and _healthy(self.base_url + "/health"):
                return
            time.sleep(_POLL_S)  # ok: a child process's HTTP port signals no event to wait on
        self._fail(f"llama-server not healthy within {self.startup_timeout:g}s")

    def _bound_url(self) -> str:
        try:
            found = _LISTENING.search(self._log.read_bytes())
        except OSError:
            return ""
        return found.group(1).decode() if found else ""

    def _fail(self, message: str) -> None:
        tail = self._log_tail()
        self.stop()
        raise LLMAPIError(f"{message}{': ' + tail if tail else ''}", provider="local")

    def _log_tail(self) -> str:
        try:
            lines = self._log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""
