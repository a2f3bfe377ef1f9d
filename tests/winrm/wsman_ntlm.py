"""WinRM message encryption for the test endpoint: MS-WSMV 2.2.9.1.1 framing around pyspnego.

A request body is a MIME-like multipart: a header part saying the original length, then
`<4-byte signature length><signature><sealed message>`; replies are framed the same way.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["ENCRYPTED", "ntlm_unwrap", "ntlm_wrap"]

ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
_BOUNDARY = b"--Encrypted Boundary"


def ntlm_unwrap(ctx: Any, body: bytes) -> bytes:
    parts = [p for p in body.split(_BOUNDARY + b"\r\n") if p]
    payload = parts[1].removeprefix(b"\tContent-Type: application/octet-stream\r\n")
    payload = payload.removesuffix(_BOUNDARY + b"--\r\n")
    sig_len = struct.unpack("<i", payload[:4])[0]
    header, data = payload[4 : 4 + sig_len], payload[4 + sig_len :]
    return bytes(ctx.unwrap_winrm(header, data))


def ntlm_wrap(ctx: Any, reply: bytes) -> tuple[bytes, str]:
    """(body, Content-Type) of an encrypted reply."""
    wrapped = ctx.wrap_winrm(reply)
    stream = struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
    payload = (
        _BOUNDARY + b"\r\n\tContent-Type: " + ENCRYPTED.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(reply)).encode() + b"\r\n" + _BOUNDARY + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n" + stream + _BOUNDARY + b"--\r\n"
    )  # fmt: skip
    ctype = f'multipart/encrypted;protocol="{ENCRYPTED}";boundary="Encrypted Boundary"'
    return payload, ctype
