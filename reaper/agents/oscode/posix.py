"""Parsing shared by the Linux and macOS action code: section markers, os-release, ip/ifconfig,
df, ss and /proc/net, passwd, sshd settings, and turning failed commands into outcomes.

Discover runs one fixed script per host that prints sections between `@@reaper:<name>@@`
markers; everything is parsed here, in Python, from plain text.
"""

from __future__ import annotations

import itertools
import re
import shlex
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reaper.agents.base import ActionOutcome, CommandResult
from reaper.models import ResultStatus

__all__ = [
    "MARKER",
    "SSHD_FACT_KEYS",
    "classify_failure",
    "error_outcome",
    "invalid_params",
    "load_params",
    "parse_cpuinfo",
    "parse_df",
    "parse_ifconfig",
    "parse_ip_addr",
    "parse_key_values",
    "parse_meminfo_mb",
    "parse_os_release",
    "parse_proc_net",
    "parse_ss",
    "parse_sshd_config",
    "parse_sshd_t",
    "parse_uid0",
    "split_sections",
    "tail",
]

MARKER = re.compile(r"^@@reaper:([a-z0-9_]+)@@$")
TAIL_CHARS = 2000
SSHD_FACT_KEYS = (
    "port",
    "listenaddress",
    "permitrootlogin",
    "passwordauthentication",
    "pubkeyauthentication",
    "kbdinteractiveauthentication",
    "permitemptypasswords",
    "x11forwarding",
    "maxauthtries",
    "usepam",
    "allowtcpforwarding",
    "clientaliveinterval",
    "loglevel",
    "banner",
)
_PSEUDO_FS = {"tmpfs", "devtmpfs", "proc", "sysfs", "devfs", "map", "squashfs", "efivarfs"}
_PERMISSION_HINTS = (
    "permission denied",
    "a password is required",
    "not in the sudoers",
    "operation not permitted",
    "must be run as root",
    "must be root",
    "are not allowed to",
    "not allowed to execute",
)


def split_sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = MARKER.match(line.strip())
        if m:
            current = sections.setdefault(m.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip("\n") for name, lines in sections.items()}


def parse_key_values(text: str, sep: str = "=") -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found and key.strip() and not key.lstrip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def parse_os_release(text: str) -> dict[str, str]:
    raw = parse_key_values(text)
    values: dict[str, str] = {}
    for key, value in raw.items():
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        values[key] = parts[0] if parts else ""
    return {
        "id": values.get("ID", "linux"),
        "name": values.get("NAME", "Linux"),
        "version": values.get("VERSION_ID", ""),
        "pretty_name": values.get("PRETTY_NAME", values.get("NAME", "Linux")),
    }


def _address(iface: str, family: str, cidr: str) -> dict[str, Any]:
    addr, _, prefix = cidr.partition("/")
    return {
        "iface": iface,
        "addr": addr.split("%")[0],
        "prefix": int(prefix) if prefix.isdigit() else None,
        "family": "ipv6" if family == "inet6" else "ipv4",
    }


def parse_ip_addr(text: str) -> list[dict[str, Any]]:
    """`ip -o addr show` lines: `2: eth0    inet 10.0.0.2/24 brd ... scope global eth0`."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
            out.append(_address(parts[1].split("@")[0], parts[2], parts[3]))
    return out


def _mask_prefix(mask: str) -> int | None:
    try:
        if mask.startswith("0x"):
            return bin(int(mask, 16)).count("1")
        return sum(bin(int(octet)).count("1") for octet in mask.split("."))
    except ValueError:
        return None


def parse_ifconfig(text: str) -> list[dict[str, Any]]:
    """BSD/macOS and net-tools `ifconfig` output."""
    out: list[dict[str, Any]] = []
    iface = ""
    for line in text.splitlines():
        if line and not line[0].isspace():
            iface = line.split(":", 1)[0].split()[0]
            continue
        parts = line.split()
        if len(parts) < 2 or parts[0] not in ("inet", "inet6"):
            continue
        addr = parts[1].removeprefix("addr:")
        prefix: int | None = None
        for key, value in itertools.pairwise(parts):
            if key in ("netmask", "Mask:"):
                prefix = _mask_prefix(value)
            elif key == "prefixlen" and value.isdigit():
                prefix = int(value)
        entry = _address(iface, parts[0], addr)
        entry["prefix"] = prefix
        out.append(entry)
    return out


def parse_cpuinfo(text: str, nproc: str = "") -> dict[str, Any]:
    # x86 has "model name" (and a numeric "model"); ARM boards "Hardware" or "Model".
    found: dict[str, str] = {}
    cores = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "processor":
            cores += 1
        elif value.strip():
            found.setdefault(key, value.strip())
    model = next((found[k] for k in ("model name", "cpu model", "hardware") if k in found), "")
    if not model and not found.get("model", "").isdigit():
        model = found.get("model", "")
    if nproc.strip().isdigit():
        cores = int(nproc.strip())
    return {"model": model or "unknown", "cores": cores}


def parse_meminfo_mb(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            return int(fields[1]) // 1024 if len(fields) > 1 and fields[1].isdigit() else None
    return None


def parse_df(text: str) -> list[dict[str, Any]]:
    """`df -P -k`: Filesystem 1024-blocks Used Available Capacity Mounted-on (may hold spaces)."""
    disks: dict[str, dict[str, Any]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 6 or not parts[1].isdigit():
            continue
        fs, size_kb, pct, mount = parts[0], int(parts[1]), parts[4], " ".join(parts[5:])
        if fs in _PSEUDO_FS or size_kb == 0 or mount in disks:
            continue
        disks[mount] = {
            "mount": mount,
            "device": fs,
            "size_gb": round(size_kb / 1024 / 1024, 1),
            "used_pct": int(pct.rstrip("%")) if pct.rstrip("%").isdigit() else None,
        }
    return list(disks.values())


def _port_of(local: str) -> int | None:
    port = local.rsplit(":", 1)[-1] if ":" in local else local.rsplit(".", 1)[-1]
    return int(port) if port.isdigit() else None


def parse_ss(text: str) -> list[dict[str, Any]]:
    """`ss -H -ltnup`: Netid State Recv-Q Send-Q Local Peer [Process]."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[0] not in ("tcp", "udp"):
            continue
        port = _port_of(parts[4])
        if port is None:
            continue
        m = re.search(r'users:\(\("([^"]+)"', line)
        entry = seen.setdefault((parts[0], port), {"proto": parts[0], "port": port})
        if m or "process" not in entry:
            entry["process"] = m.group(1) if m else None
    return sorted(seen.values(), key=lambda e: (e["proto"], e["port"]))


def parse_proc_net(text: str, proto: str) -> list[dict[str, Any]]:
    """/proc/net/{tcp,tcp6,udp,udp6}: listening tcp sockets (state 0A) and bound udp (07)."""
    want = "0A" if proto == "tcp" else "07"
    ports: set[int] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and ":" in parts[1] and parts[3] == want:
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return [{"proto": proto, "port": p, "process": None} for p in sorted(ports)]


def parse_uid0(passwd: str) -> list[str]:
    users = []
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) > 3 and fields[2] == "0" and not line.startswith("#"):
            users.append(fields[0])
    return users


def parse_sshd_t(text: str) -> dict[str, str]:
    """`sshd -T`: lower-case `key value` lines; a repeated key keeps every value, comma-joined."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value:
            out[key] = f"{out[key]},{value}" if key in out else value
    return out


def parse_sshd_config(text: str) -> dict[str, str]:
    """Top-level directives of sshd_config text: first value wins, as in sshd; Match blocks end
    the global section."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.replace("=", " ", 1).partition(" ")
        key = key.lower()
        if key == "match":
            break
        if key not in out and value.strip():
            out[key] = value.strip()
    return out


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def classify_failure(result: CommandResult) -> str:
    text = result.stderr.lower() + "\n" + result.stdout[-500:].lower()
    if any(hint in text for hint in _PERMISSION_HINTS):
        return "PERMISSION_DENIED"
    return "COMMAND_FAILED"


def error_outcome(
    what: str, result: CommandResult, logs_ref: str | None, data: dict[str, Any] | None = None
) -> ActionOutcome:
    """A host fault (not retriable): the command ran and failed."""
    code = classify_failure(result)
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=f"{what} failed (exit {result.exit_code}): {tail(result.stderr.strip(), 200)}",
        data=data or {},
        stdout_tail=tail(result.stdout),
        stderr_tail=tail(result.stderr),
        error_code=code,
        retriable=False,
        logs_ref=logs_ref,
    )


_M = TypeVar("_M", bound=BaseModel)


def load_params(model: type[_M], params: dict[str, Any]) -> _M | str:
    """The validated params, or a one-line reason they are invalid."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        return f"invalid params: {where}: {first['msg']}"


def invalid_params(message: str) -> ActionOutcome:
    return ActionOutcome(status=ResultStatus.ERROR, summary=message, error_code="INVALID_PARAMS")
