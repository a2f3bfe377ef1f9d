"""Read what Reaper needs from a GGUF model file's header: that it is one, and its context.

A user's `--model-path` may be any file; llama-server given a wrong one fails after a start
with a long log. Checking the magic bytes first gives one clear line instead. The context
length the model was trained for (`<arch>.context_length`) bounds `--ctx-size`: a larger
context than that only produces garbage past the trained length.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from llm.errors import LLMConfigError

__all__ = ["GGUF_MAGIC", "check_gguf", "context_length"]

GGUF_MAGIC = b"GGUF"
# GGUF metadata value types -> struct formats of the fixed-size ones (spec: ggml docs/gguf.md).
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_MAX_KEYS = 100_000  # a corrupt count must not make the reader spin


def check_gguf(path: Path) -> Path:
    """`path` if it is a readable GGUF file; else LLMConfigError with one line saying why."""
    if not path.is_file():
        raise LLMConfigError(f"--model-path {path}: no such GGUF file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise LLMConfigError(f"--model-path {path}: cannot read it ({exc.strerror})") from exc
    if magic != GGUF_MAGIC:
        raise LLMConfigError(f"--model-path {path}: not a GGUF model file (llama.cpp's format)")
    return path


def _read(handle: BinaryIO, fmt: str) -> int | float | bool:
    size = struct.calcsize("<" + fmt)
    data = handle.read(size)
    if len(data) != size:
        raise EOFError
    value: int | float | bool = struct.unpack("<" + fmt, data)[0]
    return value


def _string(handle: BinaryIO) -> str:
    length = int(_read(handle, "Q"))
    data = handle.read(length)
    if len(data) != length:
        raise EOFError
    return data.decode("utf-8", errors="replace")


def _skip(handle: BinaryIO, kind: int) -> object:
    if kind in _FIXED:
        return _read(handle, _FIXED[kind])
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        item, count = int(_read(handle, "I")), int(_read(handle, "Q"))
        if item in _FIXED:  # a tokenizer's arrays are large: seek over them
            handle.seek(struct.calcsize("<" + _FIXED[item]) * count, 1)
        else:
            for _ in range(count):
                _skip(handle, item)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")


def context_length(path: Path) -> int | None:
    """The model's trained context (`<arch>.context_length`), None when the header has none
    or cannot be read (llama-server then decides by itself)."""
    check_gguf(path)
    try:
        with path.open("rb") as handle:
            handle.seek(4)
            _read(handle, "I")  # version
            _read(handle, "Q")  # tensor count
            keys = int(_read(handle, "Q"))
            for _ in range(min(keys, _MAX_KEYS)):
                key = _string(handle)
                value = _skip(handle, int(_read(handle, "I")))
                if key.endswith(".context_length") and isinstance(value, int):
                    return value
    except (OSError, EOFError, ValueError, struct.error):
        return None
    return None
