"""GGUF header checks: a clear one-line error for a file that is not a model, and the trained
context read from the header (which bounds `--ctx-size`). No server needed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from llm.errors import LLMConfigError
from llm.gguf import check_gguf, context_length
from llm.llama_server import resolve_ctx_size


def _kv_string(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v


def _kv_u32(key: str, value: int) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 4) + struct.pack("<I", value)


def _kv_array(key: str, values: list[int]) -> bytes:
    k = key.encode()
    head = struct.pack("<Q", len(k)) + k + struct.pack("<I", 9)
    return head + struct.pack("<IQ", 5, len(values)) + struct.pack(f"<{len(values)}i", *values)


def _gguf(path: Path, *kvs: bytes) -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))
    return path


def test_a_file_that_is_not_gguf_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_text("not a model")
    with pytest.raises(LLMConfigError, match="not a GGUF model file") as info:
        check_gguf(bogus)
    assert "\n" not in str(info.value)
    with pytest.raises(LLMConfigError, match="no such GGUF file"):
        check_gguf(tmp_path / "absent.gguf")


def test_the_trained_context_is_read_past_other_keys_and_arrays(tmp_path: Path) -> None:
    model = _gguf(
        tmp_path / "m.gguf",
        _kv_string("general.architecture", "llama"),
        _kv_array("tokenizer.ggml.token_type", [1, 2, 3, 4]),
        _kv_u32("llama.context_length", 2048),
    )
    assert context_length(model) == 2048
    assert resolve_ctx_size(model, None) == 2048
    assert resolve_ctx_size(model, 1024) == 1024
    with pytest.raises(LLMConfigError, match="trained for 2048 tokens"):
        resolve_ctx_size(model, 4096)


def test_a_header_without_a_context_leaves_the_default(tmp_path: Path) -> None:
    model = _gguf(tmp_path / "m.gguf", _kv_string("general.architecture", "llama"))
    assert context_length(model) is None
    assert resolve_ctx_size(model, None) == 8192
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF\x03\x00")
    assert context_length(truncated) is None
