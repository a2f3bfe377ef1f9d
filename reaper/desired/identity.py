"""Resource identities and references.

A resource's identity is `KIND/NAME`: the kind, one slash, then the name verbatim. The kind
never holds a slash, so the identity splits at its *first* slash and a name may hold slashes
of its own: a path-named kind (file, directory) keeps the path's leading slash, which reads
`file//etc/motd`, and a macOS setting reads `setting/com.apple.screensaver/askForPassword`.

A reference adds the host: `HOST:KIND/NAME`. Host ids and kinds hold no colon, so a colon
*before* the first slash separates the host; a colon after it (`file/C:\\motd.txt`) is part of
the name. A reference without a host (`KIND/NAME`) means the host that declares it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Ref", "ResourceId", "parse_ref"]

_KIND_RE = re.compile(r"[a-z][a-z0-9_]*")
_HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ResourceId(NamedTuple):
    """`KIND/NAME`: unique per host."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    def on(self, host: str) -> Ref:
        return Ref(host, self.kind, self.name)


class Ref(NamedTuple):
    """`HOST:KIND/NAME`: a resource of one host, a node of the dependency graph."""

    host: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.host}:{self.kind}/{self.name}"

    @property
    def rid(self) -> ResourceId:
        return ResourceId(self.kind, self.name)


def parse_ref(text: str, *, host: str | None = None) -> Ref:
    """`HOST:KIND/NAME`, or `KIND/NAME` on `host`; ValueError says what is malformed."""
    head, slash, name = text.partition("/")
    if not slash or not name:
        raise ValueError(f"{text!r} is not a reference: write HOST:KIND/NAME or KIND/NAME")
    ref_host, colon, kind = head.rpartition(":")
    if not colon:
        if host is None:
            raise ValueError(f"{text!r} names no host: write HOST:KIND/NAME")
        ref_host = host
    elif not _HOST_RE.fullmatch(ref_host):
        raise ValueError(f"{text!r}: {ref_host!r} is not a host id")
    if not _KIND_RE.fullmatch(kind):
        raise ValueError(f"{text!r}: {kind!r} is not a resource kind")
    return Ref(ref_host, kind, name)
