# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""The baseline contract shared by the Linux and macOS code, and the items both use.

Each item reads the current state, compares it with the declared one, and in check mode stops
there ("would_change"); otherwise it applies and reads back. Values never reach a shell: files
are written from stdin and paths are positional arguments (`"$1"`) of fixed scripts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reaper.agents.base import ActionOutcome, Command, CommandResult, CommandRunner
from reaper.agents.oscode.posix import parse_sshd_config, parse_sshd_t, tail
from reaper.models import ResultStatus

__all__ = [
    "SSHD_BEGIN",
    "SSHD_DESIRED",
    "BaselineCtx",
    "Item",
    "ItemReport",
    "ItemStatus",
    "baseline_outcome",
    "file_item",
    "render_sshd_config",
    "sshd_item",
    "sshd_satisfies",
]

ItemStatus = Literal["changed", "unchanged", "would_change", "skipped", "unavailable", "failed"]
SSHD_BEGIN = "# BEGIN reaper baseline (managed; first value wins in sshd)"
SSHD_END = "# END reaper baseline"
SSHD_DESIRED: dict[str, str] = {
    # Not "no": Reaper often connects as root with a key, and "no" locked it out of every host
    # on the second run. prohibit-password still refuses root passwords (the real risk).
    "PermitRootLogin": "prohibit-password",
    "PasswordAuthentication": "no",
    "PermitEmptyPasswords": "no",
    "X11Forwarding": "no",
    "MaxAuthTries": "4",
}
_SSHD_EFFECTIVE = 'PATH="$PATH:/usr/sbin:/sbin"; exec sshd -T'
# Write the candidate beside the live file, validate it with `sshd -t`, keep a backup, then
# swap it in: a config sshd would reject never becomes live.
_SSHD_WRITE = r"""set -e
PATH="$PATH:/usr/sbin:/sbin"
f=$1
umask 077
cat > "$f.reaper-new"
if ! sshd -t -f "$f.reaper-new"; then rm -f "$f.reaper-new"; echo "sshd -t rejected the new config" >&2; exit 3; fi
cp -p "$f" "$f.reaper-bak" 2>/dev/null || true
chown 0:0 "$f.reaper-new" 2>/dev/null || true
chmod 600 "$f.reaper-new"
mv -f "$f.reaper-new" "$f"
"""
_FILE_WRITE = r"""set -e
umask 022
cat > "$1.reaper-new"
chown 0:0 "$1.reaper-new" 2>/dev/null || true
chmod 644 "$1.reaper-new"
mv -f "$1.reaper-new" "$1"
"""


@dataclass(slots=True)
class ItemReport:
    name: str
    status: ItemStatus
    before: Any = None
    after: Any = None
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.status == "changed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "changed": self.changed,
            "before": self.before,
            "after": self.after,
            "detail": self.detail,
        }


@dataclass(slots=True)
class BaselineCtx:
    shell: CommandRunner
    check_mode: bool
    host: dict[str, str] = field(default_factory=dict)  # probe results (init, tools, …)
    results: list[CommandResult] = field(default_factory=list)

    async def run(
        self,
        argv: list[str],
        *,
        sudo: bool = True,
        stdin: str | None = None,
        timeout_s: float = 60.0,
    ) -> CommandResult:
        result = await self.shell.run(
            Command(argv=argv, sudo=sudo, stdin=stdin, timeout_s=timeout_s)
        )
        self.results.append(result)
        return result

    async def sh(
        self,
        script: str,
        *args: str,
        sudo: bool = True,
        stdin: str | None = None,
        timeout_s: float = 60.0,
    ) -> CommandResult:
        """A fixed script; values only as positional parameters ($1, $2…)."""
        return await self.run(
            ["sh", "-c", script, "sh", *args], sudo=sudo, stdin=stdin, timeout_s=timeout_s
        )


Item = Callable[[BaselineCtx], Awaitable[ItemReport]]


def _fail(name: str, what: str, result: CommandResult, before: Any = None) -> ItemReport:
    err = (result.stderr or result.stdout).strip()
    detail = f"{what}: exit {result.exit_code}: {tail(err, 300)}"
    return ItemReport(name, "failed", before, None, detail)


def render_sshd_config(current: str, desired: Mapping[str, str]) -> str:
    """The config with Reaper's managed block (replacing any earlier one) at the very top.

    sshd takes the first value of a directive, and Debian's config starts with an Include, so
    only the top of the file wins over both the main file and its drop-ins."""
    lines = current.splitlines()
    if SSHD_BEGIN in lines and SSHD_END in lines:
        start, end = lines.index(SSHD_BEGIN), lines.index(SSHD_END)
        if start < end:
            lines = lines[:start] + lines[end + 1 :]
    block = [SSHD_BEGIN, *(f"{k} {v}" for k, v in desired.items()), SSHD_END]
    return "\n".join(block + lines) + "\n"


async def _sshd_effective(ctx: BaselineCtx, path: str) -> tuple[dict[str, str], str] | None:
    probe = await ctx.sh(_SSHD_EFFECTIVE)
    if probe.exit_code == 0:
        return parse_sshd_t(probe.stdout), "sshd -T"
    text = await ctx.run(["cat", "--", path])
    if text.exit_code != 0:
        return None
    return parse_sshd_config(text.stdout), "sshd_config"


# `sshd -T` prints an option's canonical spelling, which is not always the one a config uses.
_SSHD_ALIASES = {"without-password": "prohibit-password"}
# Values at least as strict as the one asked for: a host already stricter is left alone.
_SSHD_STRICTER = {("permitrootlogin", "prohibit-password"): frozenset({"no"})}


def sshd_satisfies(key: str, value: str | None, want: str) -> bool:
    """Whether an effective sshd value meets the desired one (aliases, stricter values)."""
    have = (value or "").lower()
    have, wanted = _SSHD_ALIASES.get(have, have), _SSHD_ALIASES.get(want.lower(), want.lower())
    return have == wanted or have in _SSHD_STRICTER.get((key.lower(), wanted), frozenset())


def sshd_item(path: str, reload: Callable[[BaselineCtx], Awaitable[CommandResult | None]]) -> Item:
    async def item(ctx: BaselineCtx) -> ItemReport:
        name = "sshd_hardening"
        found = await _sshd_effective(ctx, path)
        if found is None:
            return ItemReport(name, "unavailable", detail=f"no readable {path}")
        effective, source = found
        before = {k: effective.get(k.lower()) for k in SSHD_DESIRED}
        if all(
            sshd_satisfies(k, v, want)
            for (k, v), want in zip(before.items(), SSHD_DESIRED.values(), strict=True)
        ):
            return ItemReport(name, "unchanged", before, before, f"from {source}")
        if ctx.check_mode:
            return ItemReport(name, "would_change", before, dict(SSHD_DESIRED), f"from {source}")
        current = await ctx.run(["cat", "--", path])
        if current.exit_code != 0:
            return _fail(name, f"reading {path}", current, before)
        written = await ctx.sh(
            _SSHD_WRITE, path, stdin=render_sshd_config(current.stdout, SSHD_DESIRED)
        )
        if written.exit_code != 0:
            return _fail(name, "writing sshd_config", written, before)
        reloaded = await reload(ctx)
        if reloaded is not None and reloaded.exit_code != 0:
            return _fail(name, "reloading sshd", reloaded, before)
        after_found = await _sshd_effective(ctx, path)
        after = (
            {k: after_found[0].get(k.lower()) for k in SSHD_DESIRED}
            if after_found
            else dict(SSHD_DESIRED)
        )
        return ItemReport(name, "changed", before, after, f"wrote {path}, validated with sshd -t")

    return item


def file_item(name: str, path: str, content: str) -> Item:
    """A whole file with fixed content (login banners and the like)."""

    async def item(ctx: BaselineCtx) -> ItemReport:
        current = await ctx.run(["cat", "--", path])
        before = current.stdout if current.exit_code == 0 else None
        if before == content:
            return ItemReport(name, "unchanged", _short(before), _short(before), path)
        if ctx.check_mode:
            return ItemReport(name, "would_change", _short(before), _short(content), path)
        written = await ctx.sh(_FILE_WRITE, path, stdin=content)
        if written.exit_code != 0:
            return _fail(name, f"writing {path}", written, _short(before))
        return ItemReport(name, "changed", _short(before), _short(content), path)

    return item


def _short(text: str | None) -> str | None:
    return None if text is None else tail(text, 200)


def baseline_outcome(
    reports: list[ItemReport], *, check_mode: bool, ctx: BaselineCtx, logs_ref: str | None
) -> ActionOutcome:
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.status] = counts.get(r.status, 0) + 1
    failed = counts.get("failed", 0)
    status = (
        ResultStatus.SUCCESS
        if not failed
        else ResultStatus.ERROR
        if failed == len(reports)
        else ResultStatus.PARTIAL
    )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no items"
    last = ctx.results[-1] if ctx.results else None
    return ActionOutcome(
        status=status,
        summary=("check mode: " if check_mode else "") + summary,
        data={
            "check_mode": check_mode,
            "items": [r.as_dict() for r in reports],
            "changed": counts.get("changed", 0),
            "unchanged": counts.get("unchanged", 0),
            "would_change": counts.get("would_change", 0),
            "failed": failed,
        },
        stdout_tail=tail(last.stdout) if last else "",
        stderr_tail=tail("\n".join(r.stderr for r in ctx.results if r.stderr.strip())),
        error_code="COMMAND_FAILED" if failed else None,
        retriable=False,
        logs_ref=logs_ref,
    )
