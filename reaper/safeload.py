"""Reading YAML and JSON an operator hands Reaper, with limits a hostile file cannot pass.

A few KB of YAML can stand for billions of nodes through nested aliases ("billion laughs")
or nest lists thousands deep (a `RecursionError` in PyYAML's recursive composer). Here a file
is refused with one line naming it and the limit, before any Python object is built:

- size: at most `max_bytes` (checked before reading, from the file's size);
- depth: `compose_node` counts nesting as the parser goes and stops at `max_depth`;
- expansion: the composed node graph is walked once, memoised per node, counting the nodes
  and the scalar characters that constructing (and later serialising) it would produce, each
  alias counted as the whole subtree it repeats, and the depth it reaches through aliases;
  more than `max_nodes` or `max_chars`, or a recursive alias, is refused.

JSON read by `load_json` is checked for size and bracket depth first (a scan that skips
strings). The errors are `FileLimitError`, a `ConfigError`: the CLI exits 2 with the line.
`llm.replay` guards cassettes itself (the LLM layer imports nothing of Reaper).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reaper.errors import ConfigError

__all__ = [
    "DEFAULT_LIMITS",
    "FileLimitError",
    "Limits",
    "check_size",
    "compose_yaml",
    "load_json",
    "load_yaml",
    "read_limited",
]


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 2_000_000
    # Scalar text after alias expansion: without aliases it is at most the file's size.
    max_chars: int = 64 * 1024 * 1024


DEFAULT_LIMITS = Limits()


class FileLimitError(ConfigError):
    """A file over one of the limits: refused before it is built."""


def check_size(size: int, source: str, limits: Limits = DEFAULT_LIMITS) -> None:
    if size > limits.max_bytes:
        raise FileLimitError(
            f"{source}: refused: {size} bytes is over the {limits.max_bytes}-byte limit"
        )


def read_limited(path: Path, limits: Limits = DEFAULT_LIMITS) -> str:
    """A file's UTF-8 text, refused before reading when it is over `max_bytes`. `OSError`,
    `FileNotFoundError` and `UnicodeDecodeError` are the caller's to word."""
    check_size(path.stat().st_size, str(path), limits)
    with path.open("rb") as handle:  # the file may grow between stat and read
        data = handle.read(limits.max_bytes + 1)
    check_size(len(data), str(path), limits)
    return data.decode("utf-8")


def _too_deep(source: str, limits: Limits, mark: yaml.Mark | None = None) -> FileLimitError:
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return FileLimitError(
        f"{source}: refused: nesting deeper than {limits.max_depth} levels{where}"
    )


class _GuardedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting nesting as it composes."""

    def __init__(self, text: str, source: str, limits: Limits) -> None:
        super().__init__(text)
        self.source = source
        self.limits = limits
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                raise _too_deep(self.source, self.limits, parent.start_mark if parent else None)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expansion(root: yaml.Node, source: str, limits: Limits) -> None:
    """Count the nodes, scalar characters and depth `root` expands to, each distinct node
    walked once (so an alias costs what it repeats, without repeating the walk)."""
    sizes: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, characters, height)
    open_: set[int] = set()

    def walk(node: yaml.Node, depth: int) -> tuple[int, int, int]:
        key = id(node)
        known = sizes.get(key)
        if known is None:
            if key in open_:
                raise FileLimitError(f"{source}: refused: a recursive YAML alias")
            if depth > limits.max_depth:
                raise _too_deep(source, limits, node.start_mark)
            open_.add(key)
            count, chars, height = 1, 0, 0
            if isinstance(node, yaml.SequenceNode):
                children: list[yaml.Node] = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children, chars = [], len(node.value)
            for child in children:
                c, n, h = walk(child, depth + 1)
                count, chars, height = count + c, chars + n, max(height, h + 1)
                if count > limits.max_nodes or chars > limits.max_chars:
                    break
            open_.discard(key)
            known = sizes[key] = (count, chars, height)
        if known[0] > limits.max_nodes:
            raise FileLimitError(
                f"{source}: refused: expands to more than {limits.max_nodes} nodes "
                "(nested YAML aliases)"
            )
        if known[1] > limits.max_chars:
            raise FileLimitError(
                f"{source}: refused: expands to more than {limits.max_chars} characters "
                "of text (YAML aliases)"
            )
        if depth + known[2] > limits.max_depth:
            raise _too_deep(source, limits, node.start_mark)
        return known

    walk(root, 1)


def compose_yaml(
    text: str, source: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    """The checked node graph of a single-document YAML text, and the loader to construct
    from (`loader.construct_object(node, deep=True)`; the caller disposes of it). Raises
    `FileLimitError` or PyYAML's `yaml.YAMLError` (syntax)."""
    check_size(len(text.encode("utf-8")), source, limits)
    loader = _GuardedLoader(text, source, limits)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(root, source, limits)
    except BaseException:
        loader.dispose()
        raise
    return loader, root


def load_yaml(text: str, source: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """`yaml.safe_load(text)` within the limits (see the module docstring)."""
    loader, root = compose_yaml(text, source, limits)
    try:
        return None if root is None else loader.construct_document(root)
    finally:
        loader.dispose()


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def load_json(text: str, source: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """`json.loads(text)` within the size and depth limits; a syntax error is a one-line
    `ConfigError` too."""
    check_size(len(text.encode("utf-8")), source, limits)
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group(0)
        if token in ("[", "{"):
            depth += 1
            if depth > limits.max_depth:
                raise FileLimitError(
                    f"{source}: refused: nesting deeper than {limits.max_depth} levels"
                )
        elif token in ("]", "}"):
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{source}: invalid JSON: {' '.join(str(exc).split())}") from None
