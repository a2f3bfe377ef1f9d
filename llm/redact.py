"""Masking of secrets in anything the LLM layer writes down (cassettes, logs, prompts).

Pure functions: the known secret values are arguments (Reaper's registry of them lives in
`reaper.secrets`, which this layer does not import). Three things are masked:

- each known value, and its encoded forms: base64 (standard and URL-safe, padded or not, and
  the stable middle of its encoding at each of the three byte alignments, so the value is
  found inside a longer base64 blob such as a Basic-auth header), URL-encoding (`quote`,
  `quote_plus`, lower-case hex) and its JSON-escaped form;
- the value of a `key=value`, `key: value` or JSON `"key": "value"` pair whose key names a
  secret (password, passwd, passphrase, secret, token, api_key, access_key, private_key,
  credential, or ends in `_pass` as Ansible's `ansible_ssh_pass`), inside any text, and
  the password of a `scheme://user:password@host` URL;
- credential-shaped strings (`sk-…`, `Bearer …`, AWS and GitHub key shapes).

Every mask is the same fixed `[REDACTED]`: nothing of the value (not even its length) is
kept, so a mask cannot be reversed. A known value shorter than `MIN_SECRET_CHARS` (4) is
masked only where it stands as a whole token (not inside a longer word, else `ab` would
shred every text) and its encoded forms are not looked for (they would be as short and as
common); such a password is weak anyway, and Reaper says so nowhere but here.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "SECRET_KEY",
    "SECRET_PATTERNS",
    "scrub",
    "scrub_text",
    "secret_forms",
]

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4
# The shortest base64 fragment looked for inside longer blobs (shorter ones mask noise).
_MIN_STEM = 8

_SECRET_WORD = (
    r"passwords?|passwd|passphrases?|secrets?|token|(?:api|access|private)[_-]?keys?"
    r"|credentials?"
)
# A mapping key whose value is a secret whatever it looks like: the key is, or ends in, a
# secret word ("password", "db_password", "client-secret"), but a setting *about* one such as
# sshd's "passwordauthentication" is not.
SECRET_KEY = re.compile(rf"(?i)(^|[_.\-])({_SECRET_WORD}|pwd|pass|cookie)s?$")

# `key=value`, `key: value`, `"key": "value"` with a secret-naming key, inside a text ("tokens"
# is a count, and `true`/`false`/`null` are no secret). Found without scanning the text with a
# regex (Python's alternations are slow on long output): each occurrence of a stem is found
# with `str.find`, the key around it is checked, then the pair is matched where the key ends.
_STEMS = ("pass", "secret", "token", "key", "credential")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_PAIR_KEY = re.compile(rf"(?:{_SECRET_WORD}|[_.\-]pass|^pass)$")  # on a lower-case key
_PAIR_VALUE = re.compile(
    r"[\"']?[ \t]*[:=][ \t]*"
    r"(?:\"(?P<dq>(?:[^\"\\\n]|\\.)*)\"|'(?P<sq>[^'\n]*)'"
    r"|(?!(?i:true|false|null|none)\b)(?P<bare>[^\s\"',;&}\]\)]+))"
)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.\-]*://[^:/\s@]+:)(?P<pw>[^@/\s]+)(?=@)")

# Shapes of common credentials. Ordered so the more specific sk-ant- wins over sk-.
SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)(x-api-key|api[_-]?key|authorization)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
)
# Every literal below and in _STEMS: a text (lower case) holding none has nothing to mask.
_GATE = re.compile(r"pass|secret|token|key|credential|://|sk-|bearer|api|authoriz|akia|gh[pousr]_")
# Literals (lower case) one of which a text holds when a pattern above may match it.
_PATTERN_TRIGGERS: tuple[tuple[str, ...], ...] = (
    ("sk-ant-",),
    ("sk-",),
    ("bearer",),
    ("api", "authorization"),
    ("akia",),
    ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
)


def _b64_stems(raw: bytes) -> set[str]:
    """The base64 characters that depend on `raw` alone, at each of the three alignments it
    can have inside longer data."""
    stems: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        start = -(-shift * 8 // 6)  # characters touched by the prefix
        end = (shift + len(raw)) * 8 // 6  # characters touched by what follows
        stem = encoded[start:end]
        if len(stem) >= _MIN_STEM:
            stems.add(stem)
            stems.add(stem.replace("+", "-").replace("/", "_"))
    return stems


def secret_forms(value: str) -> set[str]:
    """`value` and the encodings it may appear under in output, requests or files."""
    if len(value) < MIN_SECRET_CHARS:
        return {value} if value else set()
    raw = value.encode("utf-8")
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms.update((text, text.rstrip("=")))
    forms |= _b64_stems(raw)
    for quoted in (quote(value, safe=""), quote_plus(value, safe="")):
        forms.add(quoted)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted))
    return {f for f in forms if f}


@lru_cache(maxsize=64)
def _known_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation matching every form of every known value, longest first (so a value
    containing another is masked whole)."""
    long_forms: set[str] = set()
    short: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        if len(secret) < MIN_SECRET_CHARS:
            short.add(secret)
        else:
            long_forms |= secret_forms(secret)
    parts = [re.escape(f) for f in sorted(long_forms, key=lambda f: (-len(f), f))]
    parts += [
        rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])"
        for s in sorted(short, key=lambda s: (-len(s), s))
    ]
    return re.compile("|".join(parts)) if parts else None


def _pair_spans(text: str, low: str) -> list[tuple[int, int]]:
    """Spans of the values of secret-keyed pairs in `text` (`low` is its lower case)."""
    spans: list[tuple[int, int]] = []
    checked: set[int] = set()
    size = len(low)
    for stem in _STEMS:
        at = low.find(stem)
        while at != -1:
            end = at + len(stem)
            while end < size and low[end] in _KEY_CHARS:
                end += 1
            if end not in checked:
                checked.add(end)
                start = at
                while start > 0 and low[start - 1] in _KEY_CHARS:
                    start -= 1
                if _PAIR_KEY.search(low[start:end]):
                    m = _PAIR_VALUE.match(text, end)
                    group = next((g for g in ("dq", "sq", "bare") if m and m.group(g)), None)
                    if m and group and m.group(group) != REDACTED:
                        spans.append(m.span(group))
            at = low.find(stem, end)
    return sorted(spans)


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        if start >= last:
            out.append(text[last:start] + REDACTED)
            last = end
    out.append(text[last:])
    return "".join(out)


def _scrub_shapes(text: str) -> str:
    """`text` with secret-keyed pairs, URL passwords and credential shapes masked."""
    low = text.lower()
    if len(low) != len(text):  # a character whose lower case is longer: match on the text
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    if not _GATE.search(low):
        return text
    if any(stem in low for stem in _STEMS):
        spans = _pair_spans(text, low)
        if spans:
            text = _mask_spans(text, spans)
            low = text.lower() if len(text.lower()) == len(text) else text
    if "://" in low:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    for pattern, triggers in zip(SECRET_PATTERNS, _PATTERN_TRIGGERS, strict=True):
        if any(t in low for t in triggers):
            if pattern.groups >= 2:
                text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
            else:
                text = pattern.sub(REDACTED, text)
    return text


# Results repeat: ten thousand hosts report the same summary ("ensured package/curl:
# changed") and the same ensure data, so a pure function of (text, secrets) is memoised.
# Only short texts (a long output tail is seldom seen twice, and would hold memory).
_MEMO_CHARS = 2048
_MEMO_SIZE = 4096


def scrub_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secret values (and their encodings), secret-keyed pairs and
    credential-shaped strings replaced by ``REDACTED``."""
    if not text:
        return text
    known = secrets if type(secrets) is tuple else tuple(secrets)
    if len(text) <= _MEMO_CHARS:
        return _scrub_text_memo(text, known)
    return _scrub_text(text, known)


def _scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    known = _known_pattern(secrets)
    if known is not None:
        text = known.sub(REDACTED, text)
    return _scrub_shapes(text)


_scrub_text_memo = lru_cache(maxsize=_MEMO_SIZE)(_scrub_text)


def _secret_key_in(keys: str) -> bool:
    """Whether one of the newline-separated `keys` is a SECRET_KEY."""
    return _secret_key_memo(keys) if len(keys) <= _MEMO_CHARS else _find_secret_key(keys)


def _find_secret_key(keys: str) -> bool:
    low = keys.lower()
    if len(low) != len(keys):
        return any(SECRET_KEY.search(k) for k in keys.split("\n"))
    for stem in (*_STEMS, "pwd", "cookie"):
        at = low.find(stem)
        while at != -1:
            start = low.rfind("\n", 0, at) + 1
            end = low.find("\n", at)
            end = len(low) if end == -1 else end
            if SECRET_KEY.search(keys[start:end]):
                return True
            at = low.find(stem, end)
    return False


_secret_key_memo = lru_cache(maxsize=_MEMO_SIZE)(_find_secret_key)


def _collect(value: Any, texts: list[str], keys: list[str]) -> None:
    # A loop over a stack, not recursion: it runs over every result's facts, and a Python
    # call per node was most of its cost. The order of `texts` does not matter (newline-joined).
    stack = [value]
    pop, push, extend, add = stack.pop, stack.append, stack.extend, texts.append
    while stack:
        v = pop()
        kind = type(v)
        if kind is str:
            add(v)
        elif kind is dict:
            for k, item in v.items():
                if isinstance(k, str):
                    keys.append(k)
                    add(k)
                push(item)
        elif kind is list or kind is tuple:
            extend(v)
        elif isinstance(v, str):  # str subclasses (enums)
            add(v)
        elif isinstance(v, dict):
            push(dict(v))
        elif isinstance(v, list | tuple):
            extend(v)


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-like value with every string (keys included) scrubbed, and the string value of
    a secret-naming key masked whole. Unchanged parts are returned as they are (no copy);
    tuples become lists."""
    known = secrets if type(secrets) is tuple else tuple(secrets)
    if isinstance(value, dict | list | tuple):
        # The common case, a host's facts with nothing to mask, at the cost of one search over
        # all its text (a tenth of scrubbing each string): strings are joined by newlines,
        # which no pattern crosses, and keys checked against SECRET_KEY one per line.
        texts: list[str] = []
        keys: list[str] = []
        _collect(value, texts, keys)
        joined = "\n".join(texts)
        if scrub_text(joined, known) == joined and not _secret_key_in("\n".join(keys)):
            return value
    return _scrub(value, known)


def _same(text: str, scrubbed: str) -> str:
    """`text` itself when scrubbing changed nothing: the memo may answer with an equal string
    of another identity, and an unchanged container is returned as it is, not copied."""
    return text if scrubbed == text else scrubbed


def _scrub(value: Any, known: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _same(value, scrub_text(value, known))
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        changed = False
        for k, v in value.items():
            key = _same(k, scrub_text(k, known)) if isinstance(k, str) else k
            if isinstance(v, str) and isinstance(k, str) and v and SECRET_KEY.search(k):
                new: Any = REDACTED
            else:
                new = _scrub(v, known)
            changed = changed or key is not k or new is not v
            out[key] = new
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [_scrub(v, known) for v in value]
        if isinstance(value, list) and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
    return value
