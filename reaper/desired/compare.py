"""How a declared value is compared with an observed one, per field and kind.

Discover reports what it sees in the tools' own spelling ("644" from stat, `yes` from sshd -T,
an int from the registry); declarations are written by people ("0644", "no", "1"). Each rule
maps both sides to one form before comparing, so a converged host diffs as `ok`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["content_digest", "merged_groups", "normalise_mode", "pick", "same"]

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def content_digest(text: str) -> str:
    """`sha256:<hex>` of a file's content (UTF-8): files are compared, and shown, by digest."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_mode(value: Any) -> str | None:
    """'644', '0644', '0o644' and the numeric mode 0o644 (an int from stat) → '0644'."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value & 0o7777:04o}"
    return str(value).strip().removeprefix("0o").zfill(4)


def _text(value: Any) -> str:
    # Whitespace runs collapse ("4096  87380" from sysctl) and booleans read as 1/0.
    if isinstance(value, bool):
        return "1" if value else "0"
    text = " ".join(str(value).split()).lower()
    return "1" if text in _TRUE else "0" if text in _FALSE else text


def _version(want: Any, seen: Any) -> bool:
    # A prefix at a component boundary: "1.24" matches "1.24.0-1ubuntu1", not "1.240".
    w, s = str(want), str(seen)
    return s == w or (s.startswith(w) and s[len(w)] in ".-+~:")


def _subset(want: Any, seen: Any) -> bool:
    # Memberships are additive: the declared groups must be there, others are left alone.
    return set(want) <= set(seen or ())


def _ordered(want: Any, seen: Any) -> bool:
    return [str(x) for x in want] == [str(x) for x in seen or ()]


def _plain(want: Any, seen: Any) -> bool:
    if isinstance(want, bool) or isinstance(seen, bool):
        return _text(want) == _text(seen)
    return str(want) == str(seen)


_RULES: dict[str, Callable[[Any, Any], bool]] = {
    "mode": lambda w, s: normalise_mode(w) == normalise_mode(s),
    "version": _version,
    "groups": _subset,
    "servers": _ordered,
    "search": _ordered,
    "components": _ordered,
}
# Kinds whose `value` is free text compared loosely (sshd lowercases, sysctl pads).
_TEXT_VALUE = frozenset({"setting", "sshd_option"})


def same(kind: str, field: str, want: Any, seen: Any) -> bool:
    """Whether the observed `seen` satisfies the declared `want` for `field` of `kind`."""
    if seen is None:
        return False
    if field == "value" and kind in _TEXT_VALUE:
        return _text(want) == _text(seen)
    rule = _RULES.get(field, _plain)
    return rule(want, seen)


def merged_groups(want: Any, seen: Any) -> list[str]:
    """What `groups` becomes once the declared ones are added (for the diff's `after`)."""
    return sorted({*(seen or ()), *want})


def pick(observed: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` the observation reports (discover may say `sha256` or `content`)."""
    for name in names:
        if name in observed:
            return observed[name]
    return None
