"""Reading Ansible inventory files (INI and YAML) into groups, hosts and variables.

Follows Ansible's inventory rules: every group is under `all`; hosts outside any group are in
`ungrouped`; `[g:children]` and YAML `children:` nest groups; `[g:vars]` and YAML `vars:` set
group variables; host patterns expand ranges (`web[01:03]`, `db-[a:c]`, `n[0:10:5]`). Variables
keep the line they were set on, so a bad value is reported as `file:line`. INI values are Python
literals when they parse as one, else strings (as Ansible's INI plugin reads them). No error
message repeats a variable's value: it may be a secret.
"""

from __future__ import annotations

import ast
import re
import shlex
import string
from dataclasses import dataclass, field
from typing import Any

import yaml

from reaper.errors import ConfigError
from reaper.safeload import compose_yaml

__all__ = ["Group", "Inventory", "Var", "expand_pattern", "parse_ini", "parse_yaml"]


# A few bytes (`web[1:999999999]`) must not stand for a billion hosts.
MAX_HOSTS = 100_000


@dataclass(frozen=True, slots=True)
class Var:
    value: Any
    line: int


@dataclass
class Group:
    name: str
    line: int = 0
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Var] = field(default_factory=dict)


@dataclass
class Inventory:
    source: str
    groups: dict[str, Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Var]] = field(default_factory=dict)  # in first-seen order
    host_lines: dict[str, int] = field(default_factory=dict)
    _members: set[tuple[str, str]] = field(default_factory=set, repr=False)  # (group, host)

    def error(self, line: int, message: str) -> ConfigError:
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {message}")

    def group(self, name: str, line: int) -> Group:
        group = self.groups.get(name)
        if group is None:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise self.error(line, f"invalid group name {name!r}")
            group = self.groups[name] = Group(name, line)
        return group

    def add_host(self, name: str, group: str, line: int, hvars: dict[str, Var]) -> None:
        if name not in self.host_vars:
            if len(self.host_vars) >= MAX_HOSTS:
                raise self.error(line, f"more than {MAX_HOSTS} hosts")
            self.host_vars[name] = {}
            self.host_lines[name] = line
        self.host_vars[name].update(hvars)
        members = self.group(group, line).hosts
        if (group, name) not in self._members:  # a set: a big group is not quadratic
            self._members.add((group, name))
            members.append(name)

    def finish(self) -> Inventory:
        """Hang top-level groups under `all`, put group-less hosts in `ungrouped`, and refuse
        undefined children and cycles."""
        every = self.group("all", 0)
        ungrouped = self.group("ungrouped", 0)
        for g in list(self.groups.values()):
            for child in g.children:
                if child not in self.groups:
                    raise self.error(g.line, f"group {g.name!r} lists undefined child {child!r}")
        nested = {c for g in self.groups.values() for c in g.children}
        for name in self.groups:
            if name != "all" and name not in nested and name not in every.children:
                every.children.append(name)
        grouped = {h for g in self.groups.values() if g.name not in ("all",) for h in g.hosts}
        for host in self.host_vars:
            if host not in grouped and host not in ungrouped.hosts:
                ungrouped.hosts.append(host)
        self._check_cycles()
        return self

    def _check_cycles(self) -> None:
        state: dict[str, int] = {}  # 1 = on the path, 2 = done

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                loop = " → ".join((*path[path.index(name) :], name))
                raise self.error(self.groups[name].line, f"group cycle: {loop}")
            state[name] = 1
            for child in self.groups[name].children:
                visit(child, (*path, name))
            state[name] = 2

        for name in self.groups:
            visit(name, ())


_RANGE = re.compile(r"\[([^\[\]:]+):([^\[\]:]+)(?::(\d+))?\]")


def expand_pattern(pattern: str, limit: int = MAX_HOSTS) -> list[str]:
    """Ansible host ranges: `web[01:03]` → web01 web02 web03; `[a:c]`; `[0:10:5]` (stride).
    More than `limit` names is a `ValueError`, raised before any is made."""
    m = _RANGE.search(pattern)
    if m is None:
        return [pattern]
    start, end, stride_text = m.group(1), m.group(2), m.group(3)
    stride = int(stride_text) if stride_text else 1
    if stride < 1:
        raise ValueError(f"bad stride in {pattern!r}")
    head, tail = pattern[: m.start()], pattern[m.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        lo, hi = int(start), int(end)
        if lo > hi:
            raise ValueError(f"range start after end in {pattern!r}")
        _check_count(pattern, len(range(lo, hi + 1, stride)), limit)
        items = [str(i).zfill(width) for i in range(lo, hi + 1, stride)]
    elif len(start) == 1 and len(end) == 1 and start in string.ascii_letters and end.isalpha():
        lo, hi = ord(start), ord(end)
        if lo > hi:
            raise ValueError(f"range start after end in {pattern!r}")
        items = [chr(i) for i in range(lo, hi + 1, stride)]
    else:
        raise ValueError(f"bad range in {pattern!r}")
    _check_count(pattern, len(items), limit)
    inner = limit // len(items)
    return [name for item in items for name in expand_pattern(head + item + tail, inner)]


def _check_count(pattern: str, count: int, limit: int) -> None:
    if count > limit:
        raise ValueError(f"{pattern!r} stands for more than {MAX_HOSTS} hosts")


# -- INI -------------------------------------------------------------------------------------

_SECTION = re.compile(r"^\[([^\]:\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")


def _ini_value(text: str) -> Any:
    # As Ansible's INI plugin: a Python literal when it parses as one, else the raw text.
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _ini_pairs(inv: Inventory, words: list[str], line: int) -> dict[str, Var]:
    out: dict[str, Var] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            # No value echoed: it may be half of a password.
            raise inv.error(line, "expected key=value after the host name")
        out[key] = Var(_ini_value(value), line)
    return out


def _split_port(pattern: str) -> tuple[str, int | None]:
    """`host:port` and `[v6]:port` (Ansible's shorthand); a range like `web[01:03]` and a bare
    IPv6 address have no port."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)", pattern)
    if m is not None and ("::" in m.group(1) or m.group(1).count(":") >= 3):
        return m.group(1), int(m.group(2))
    outside = re.sub(r"\[[^\]]*\]", "", pattern)
    head, _, port = pattern.rpartition(":")
    if outside.count(":") == 1 and port.isdigit():
        return head, int(port)
    return pattern, None


def _ini_host(inv: Inventory, text: str, group: str, line: int) -> None:
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        raise inv.error(line, "unbalanced quotes on a host line") from None
    if not words:
        return
    pattern, hvars = words[0], _ini_pairs(inv, words[1:], line)
    pattern, port = _split_port(pattern)
    if port is not None:
        hvars = {"ansible_port": Var(port, line), **hvars}
    try:
        names = expand_pattern(pattern)
    except ValueError as exc:
        raise inv.error(line, str(exc)) from None
    for name in names:
        inv.add_host(name, group, line, hvars)


def parse_ini(text: str, source: str) -> Inventory:
    inv = Inventory(source)
    group, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        m = _SECTION.match(stripped)
        if m is not None:
            group, kind = m.group(1).strip(), m.group(2) or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise inv.error(number, f"unknown section type :{kind} (hosts, vars, children)")
            inv.group(group, number)
            continue
        if stripped.startswith("["):
            raise inv.error(number, "malformed section header")
        if kind == "hosts":
            _ini_host(inv, stripped, group, number)
        elif kind == "children":
            child = stripped.split()[0]
            inv.group(child, number)
            if child not in inv.groups[group].children:
                inv.groups[group].children.append(child)
        else:
            key, eq, value = stripped.partition("=")
            if not eq or not key.strip():
                raise inv.error(number, f"expected key=value in [{group}:vars]")
            inv.groups[group].vars[key.strip()] = Var(_ini_value(value.strip()), number)
    return inv.finish()


# -- YAML ------------------------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(inv: Inventory, node: yaml.Node, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise inv.error(_line(node), f"{what} must be a mapping")
    return list(node.value)


def _key(inv: Inventory, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise inv.error(_line(node), "mapping keys must be plain names")
    return str(node.value)


def _yaml_vars(inv: Inventory, loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Var]:
    out: dict[str, Var] = {}
    for k, v in _mapping(inv, node, "vars"):
        out[_key(inv, k)] = Var(loader.construct_object(v, deep=True), _line(k))
    return out


def _yaml_group(inv: Inventory, loader: yaml.SafeLoader, name: str, node: yaml.Node) -> None:
    group = inv.group(name, _line(node))
    for k, v in _mapping(inv, node, f"group {name!r}"):
        section = _key(inv, k)
        if section == "hosts":
            for hk, hv in _mapping(inv, v, f"hosts of {name!r}"):
                try:
                    names = expand_pattern(_key(inv, hk))
                except ValueError as exc:
                    raise inv.error(_line(hk), str(exc)) from None
                hvars = _yaml_vars(inv, loader, hv)
                for host in names:
                    inv.add_host(host, name, _line(hk), hvars)
        elif section == "vars":
            group.vars.update(_yaml_vars(inv, loader, v))
        elif section == "children":
            for ck, cv in _mapping(inv, v, f"children of {name!r}"):
                child = _key(inv, ck)
                _yaml_group(inv, loader, child, cv)
                if child not in group.children:
                    group.children.append(child)
        else:
            raise inv.error(
                _line(k), f"group {name!r}: unknown key {section!r} (hosts, vars, children)"
            )


def _yaml_line(exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else 0


def _yaml_problem(exc: yaml.YAMLError) -> str:
    return getattr(exc, "problem", None) or "cannot parse"


def parse_yaml(text: str, source: str) -> Inventory:
    inv = Inventory(source)
    try:
        loader, root = compose_yaml(text, source)
    except yaml.YAMLError as exc:
        raise inv.error(_yaml_line(exc), f"invalid YAML: {_yaml_problem(exc)}") from None
    try:
        if root is None:
            raise inv.error(0, "empty inventory")
        for k, v in _mapping(inv, root, "an inventory"):
            _yaml_group(inv, loader, _key(inv, k), v)
    except yaml.YAMLError as exc:
        raise inv.error(_yaml_line(exc), f"invalid YAML: {_yaml_problem(exc)}") from None
    finally:
        loader.dispose()
    return inv.finish()
