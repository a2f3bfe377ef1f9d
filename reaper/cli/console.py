"""Rendering missions for people: pure functions of state to rich renderables.

The live dashboard pulls `render_mission` through `Live(get_renderable=...)`; tests render the
same functions to a `Console(file=StringIO())`. Nothing here changes state or does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from reaper.desired.kinds import resource_of
from reaper.desired.progress import (
    CONVERGE_COUNTS,
    Progress,
    converge_counts,
    progress,
    would_change_counts,
)
from reaper.engine.state import goal_progress
from reaper.models import (
    EventKind,
    EventRecord,
    HostState,
    HostStatus,
    MissionState,
    MissionStatus,
    ResultEvent,
    Stage,
    TaskRecord,
    TaskStatus,
)
from reaper.planners.budget import is_synthetic

__all__ = [
    "STATUS_STYLE",
    "format_cost",
    "format_event",
    "host_key_facts",
    "render_events",
    "render_hosts",
    "render_mission",
    "render_missions",
    "render_recap",
    "render_usage",
]

STATUS_STYLE = {
    MissionStatus.RUNNING: "bold cyan",
    MissionStatus.AWAITING_APPROVAL: "bold yellow",
    MissionStatus.COMPLETED: "bold green",
    MissionStatus.FAILED: "bold red",
    MissionStatus.STALLED: "bold magenta",
    MissionStatus.STOPPED: "bold yellow",
    MissionStatus.INTERRUPTED: "bold yellow",
    MissionStatus.CANCELLED: "bold red",
}
_HOST_STYLE = {"healthy": "green", "degraded": "yellow", "error": "red", "unknown": "dim"}
_MAX_HOST_ROWS = 40
# A recap lists every host up to this many; past it, the hosts of note and a summary line.
_MAX_RECAP_ROWS = 50
# A host with any of these in the recap is of note.
_NOTABLE = ("failed", "rejected", "retries")


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def host_key_facts(host: HostState) -> str:
    """A short line of the facts an operator looks for first, per OS."""
    f = host.facts
    if not f:
        return ""
    if host.os == "windows":
        parts = [_get(f, "computer", "os_name"), _get(f, "computer", "build")]
        fw = _get(f, "firewall")
        if isinstance(fw, Mapping):
            on = sum(1 for v in fw.values() if v in ("on", True))
            parts.append(f"fw {on}/{len(fw)} on")
    elif host.os == "macos":
        parts = [
            _get(f, "sw_vers", "product_name"),
            _get(f, "sw_vers", "product_version"),
            _get(f, "hardware", "chip"),
        ]
    else:
        parts = [_get(f, "os", "pretty_name") or _get(f, "os", "name"), _get(f, "kernel")]
    baseline = _get(f, "baseline")
    if isinstance(baseline, Mapping) and "changed" in baseline:
        parts.append(f"baseline Δ{baseline['changed']}")
    return " · ".join(str(p) for p in parts if p)


def host_label(host: HostState) -> Text:
    """The host id, marked when the host is simulated (nothing real is touched)."""
    label = Text(host.host_id)
    if host.connection.transport == "sim":
        label.append(" (sim)", style="dim")
    return label


def converged_cell(p: Progress, host_id: str) -> Text:
    t = p.tally(host_id)
    total = sum(t.values())
    bad = t["failed"] + t["blocked"]
    style = "red" if bad else ("green" if t["ok"] == total else "")
    # Changed, not yet read back (a host's last discover counts them): shown, so a host at
    # work does not read 0/7 until its very end.
    done = f" +{t['settled']} done" if t["settled"] else ""
    return Text(f"{t['ok']}/{total}{done}" + (f" ✗{bad}" if bad else ""), style=style)


def resource_line(p: Progress, host: HostState, running: Mapping[str, TaskRecord]) -> str:
    """What the host is on, or waits for: the resource its ensure under way (`running`: host
    → its open task) is about, else the first blocked or waiting one with its reason
    ("waiting for dc-01:ad_domain/lab.local")."""
    spec = _current_resource(host, running.get(host.host_id))
    if spec:
        return f"now {spec}"
    for node in p.host_nodes(host.host_id):
        status = p.status(node)
        if status in ("waiting", "blocked", "failed"):
            # The reason first: in a narrow column, what it waits for is what reads.
            return f"{p.why.get(node, status)} ({node.rid})"[:120]
    return ""


def _current_resource(host: HostState, rec: TaskRecord | None) -> str:
    """The resource of the host's ensure under way (`package/nginx`)."""
    action = host.current_action or ""
    if ".ensure_" not in action:
        return ""
    named = resource_of(rec.task.params, {}) if rec is not None else None
    return named or action.partition(".ensure_")[2]


def _running(state: MissionState) -> dict[str, TaskRecord]:
    """Host → its open task (one pass: a host has one at a time)."""
    tasks = state.tasks
    return {(rec := tasks[tid]).task.host_id: rec for tid in state.open_task_ids}


def _status_text(state: MissionState) -> Text:
    return Text(state.status.value, style=STATUS_STYLE.get(state.status, "bold"))


def render_hosts(
    state: MissionState,
    *,
    limit: int = _MAX_HOST_ROWS,
    host_costs: Mapping[str, Any] | None = None,
    priced: bool = True,
) -> Table:
    """One row per host; with `host_costs` (LLM usage per host) a cost column too (`unknown`
    where nothing was `priced`)."""
    table = Table(expand=True, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("host", no_wrap=True)
    table.add_column("os", no_wrap=True)
    # A desired-state host's progress is its resources converged, not a stage.
    table.add_column("stage" if not state.converges else "resources", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("fail", justify="right", no_wrap=True)
    table.add_column("facts", overflow="ellipsis", no_wrap=True, ratio=1)
    if host_costs is not None:
        table.add_column("llm $", justify="right", no_wrap=True)
    every = state.hosts.values()
    # All fit: a steady order (locked first). Not all: what needs an eye, then what runs.
    key = _attention if len(every) > limit else (lambda h: (not h.locked, h.host_id))
    hosts = sorted(every, key=key)
    p = progress(state) if state.converges else None
    running = _running(state) if p is not None else {}
    for host in hosts[:limit]:
        status = "locked" if host.locked else host.last_status.value
        style = "bold red" if host.locked else _HOST_STYLE.get(status, "")
        fails = f"{host.failure_count}/{host.max_failures}"
        cells: list[Any] = [
            host_label(host),
            host.os,
            host.stage.value if p is None else converged_cell(p, host.host_id),
            Text(status, style=style),
            host.current_action or "",
            Text(fails, style="red" if host.failure_count else "dim"),
            # A desired-state host with nothing under way or held: its key facts, as a
            # stage mission's row shows them.
            host_key_facts(host)
            if p is None
            else resource_line(p, host, running) or host_key_facts(host),
        ]
        if host_costs is not None:
            cost = _get(host_costs, host.host_id, "cost_usd")
            cells.append(
                "unknown"
                if not priced and not cost
                else (f"{cost:.4f}" if isinstance(cost, (int, float)) else "")
            )
        table.add_row(*cells)
    if len(hosts) > limit:
        tail: list[Any] = [""] * len(table.columns)
        tail[0] = Text(f"… {len(hosts) - limit} more", style="dim")
        rest = hosts[limit:]  # summed up under "facts": the room is there
        tail[6] = Text(_by_stage(rest) if p is None else _by_progress(p, rest), style="dim")
        table.add_row(*tail)
    return table


def _attention(host: HostState) -> tuple[int, str]:
    """Locked, then failing or unwell, then busy, then the rest; by id within each."""
    if host.locked:
        rank = 0
    elif host.failure_count or host.last_status in (HostStatus.DEGRADED, HostStatus.ERROR):
        rank = 1
    elif host.current_action:
        rank = 2
    else:
        rank = 3
    return rank, host.host_id


def _by_stage(hosts: Sequence[HostState]) -> str:
    """'new 1700 · discovered 260', stages in order."""
    counts = Counter(h.stage for h in hosts)
    return " · ".join(f"{stage.value} {counts[stage]}" for stage in Stage if counts[stage])


def _by_progress(p: Progress, hosts: Sequence[HostState]) -> str:
    """'converged 1700 · converging 260 · failed 3': desired-state hosts by where they are."""
    counts: Counter[str] = Counter()
    for host in hosts:
        t = p.tally(host.host_id)
        if t["failed"] or t["blocked"]:
            counts["failed"] += 1
        elif t["ok"] == sum(t.values()):
            counts["converged"] += 1
        else:
            counts["converging"] += 1
    order = ("converged", "converging", "failed")
    return " · ".join(f"{k} {counts[k]}" for k in order if counts[k])


def _planned(p: Mapping[str, Any], line: Text) -> None:
    line.append("plan    ", style="cyan")
    line.append(f"{p.get('host_id')} {p.get('action')}")
    if p.get("reason"):
        line.append(f" — {p['reason']}", style="dim")
    if p.get("approval"):
        line.append(" [needs approval]", style="yellow")


def _result(p: Mapping[str, Any], line: Text) -> None:
    raw = p.get("result")
    r = raw if isinstance(raw, ResultEvent) else ResultEvent.model_validate(raw or {})
    line.append("result  ", style="green" if r.ok else "red")
    line.append(f"{r.host_id} {r.action} {r.status.value}")
    if r.attempt > 1:
        line.append(f" (attempt {r.attempt})", style="dim")
    if not r.ok:
        line.append(f" {r.error_code or ''}", style="red")
    if r.summary:
        line.append(f" — {r.summary}", style="dim")


def _refused(p: Mapping[str, Any], line: Text) -> None:
    prop = p.get("proposal", {})
    line.append("refused ", style="bold red")
    line.append(f"{prop.get('host_id')} {prop.get('action')}: {p.get('reason')}")


def _retry(p: Mapping[str, Any], line: Text) -> None:
    line.append("retry   ", style="yellow")
    line.append(
        f"{p.get('host_id')} attempt {p.get('attempt')} in {p.get('delay_s', 0):.1f}s"
        f" after {p.get('error_code')}"
    )


def _locked(p: Mapping[str, Any], line: Text) -> None:
    line.append("locked  ", style="bold red")
    line.append(f"{p.get('host_id')}: {p.get('reason')}")


def _status(p: Mapping[str, Any], line: Text) -> None:
    line.append("status  ", style="bold")
    line.append(f"{p.get('from')} → {p.get('to')}: {p.get('reason')}")


def _decision(p: Mapping[str, Any], line: Text) -> None:
    line.append("planner ", style="blue")
    line.append(f"step {p.get('step')}: {p.get('accepted')}/{p.get('proposed')} accepted")
    if p.get("fallback"):
        line.append(f" (fallback: {p.get('error', '')})", style="yellow")
    if p.get("cost_usd") and not is_synthetic(p.get("provider")):
        line.append(f" ${p['cost_usd']:.4f}", style="dim")
    if p.get("note"):
        line.append(f" — {p['note']}", style="dim")


def _approval(p: Mapping[str, Any], line: Text) -> None:
    line.append(f"{p.get('task_id')} {p.get('host_id')} {p.get('action')}")


def _abandoned(p: Mapping[str, Any], line: Text) -> None:
    line.append("abandon ", style="bold red")
    line.append(f"{p.get('task_id')} {p.get('action')} on {p.get('host_id')}: {p.get('reason')}")


def _unlocked(p: Mapping[str, Any], line: Text) -> None:
    line.append("unlock  ", style="bold green")
    line.append(f"{p.get('host_id')} by {p.get('by')} (was: {p.get('was')})")
    if p.get("note"):
        line.append(f" — {p['note']}", style="dim")


def _budget(p: Mapping[str, Any], line: Text) -> None:
    line.append("budget  ", style="blue")
    line.append(f"{p.get('before')} → {p.get('after')} by {p.get('by')}")


_FORMATTERS = {
    EventKind.TASK_ABANDONED: _abandoned,
    EventKind.HOST_UNLOCKED: _unlocked,
    EventKind.BUDGET_RAISED: _budget,
    EventKind.TASK_PLANNED: _planned,
    EventKind.TASK_RESULT: _result,
    EventKind.TASK_REFUSED: _refused,
    EventKind.TASK_RETRY: _retry,
    EventKind.HOST_LOCKED: _locked,
    EventKind.STATUS_CHANGED: _status,
    EventKind.PLANNER_DECISION: _decision,
}


def format_event(event: EventRecord) -> Text:
    """One line per log entry: what happened, to what, and why."""
    p = event.payload
    line = Text(f"{event.ts.strftime('%H:%M:%S')} ", style="dim")
    formatter = _FORMATTERS.get(event.kind)
    if formatter is not None:
        formatter(p, line)
    elif event.kind.value.startswith("approval."):
        line.append(f"{event.kind.value.split('.')[1]:<8} ", style="yellow")
        _approval(p, line)
    else:
        line.append(f"{event.kind.value:<8} ", style="dim")
        line.append(", ".join(f"{k}={v}" for k, v in list(p.items())[:4]))
    return line


def render_events(events: Sequence[EventRecord], *, limit: int = 8) -> RenderableType:
    shown = [
        e
        for e in events
        if e.kind is not EventKind.PLANNER_DECISION
        or e.payload.get("fallback")
        or e.payload.get("cost_usd")
    ][-limit:]
    if not shown:
        return Text("no events yet", style="dim")
    return Group(*(format_event(e) for e in shown))


def format_cost(usage: Mapping[str, Any]) -> str:
    """`$0.0123`; `cost unknown` when no call was priced (a model missing from the price
    table: $0.0000 would be a lie), `$0.0123 + unknown` when only some were."""
    if usage.get("synthetic"):
        return "no cost (synthetic answers)"
    cost = float(usage.get("cost_usd") or 0.0)
    if usage.get("priced", True):
        return f"${cost:.4f}"
    return f"${cost:.4f} + unknown" if cost else "cost unknown"


def render_usage(usage: Mapping[str, Any] | None) -> Text | None:
    if not usage or not usage.get("calls"):
        return None
    text = Text("LLM  ", style="bold blue")
    if usage.get("synthetic"):
        # Never a model's name alone on answers no model wrote.
        who = f"synthetic: scripted answers, no model (labelled {usage.get('model', '')})"
        text.append(who, style="bold yellow")
    else:
        text.append(f"{usage.get('provider', '')} {usage.get('model', '')}")
    text.append(
        f"  calls {usage.get('calls', 0)}"
        f"  in {usage.get('input_tokens', 0):,}  out {usage.get('output_tokens', 0):,}"
        f"  cached {usage.get('cache_read_tokens', 0):,}  {format_cost(usage)}"
    )
    if usage.get("fallbacks"):
        text.append(f"  fallbacks {usage['fallbacks']}", style="yellow")
    return text


def _progress(state: MissionState) -> Table:
    done = sum(1 for r in state.tasks.values() if r.status.done)
    if state.converges:
        t = progress(state).tally()
        reached, total = t["ok"], sum(t.values())
        goal = "converge" + (" (check mode)" if state.check_mode else "")
        bad = t["failed"] + t["blocked"]
        unit = "resources" + (f" ({bad} failed or blocked)" if bad else "")
    else:
        reached, total = goal_progress(state)
        goal, unit = f"goal {state.goal.value}", "hosts"
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True, justify="right")
    grid.add_row(
        Text(goal, style="bold"),
        ProgressBar(total=max(total, 1), completed=reached),
        Text(f"{reached}/{total} {unit} · tasks {done}/{len(state.tasks)}"),
    )
    return grid


def render_mission(
    state: MissionState,
    events: Sequence[EventRecord] = (),
    *,
    usage: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    event_lines: int = 8,
) -> RenderableType:
    """The live dashboard: header, progress, host table, LLM usage, event tail."""
    title = Text.assemble(
        (f"{state.mission_id}", "bold"),
        "  ",
        (state.lab_type, "dim"),
        "  ",
        _status_text(state),
        "  ",
        (f"planner {state.planner} · step {state.step}", "dim"),
    )
    if now is not None:
        title.append(f"  {(now - state.created_at).total_seconds():.1f}s", style="dim")
    host_costs = usage.get("hosts") if usage else None
    priced = bool(usage.get("priced", True)) if usage else True
    parts: list[RenderableType] = [
        _progress(state),
        render_hosts(state, host_costs=host_costs, priced=priced),
    ]
    usage_line = render_usage(usage)
    if usage_line is not None:
        parts.append(usage_line)
    waiting = sorted(state.awaiting_approval)
    if waiting:
        approvals = Text("awaiting approval: ", style="bold yellow")
        approvals.append(
            ", ".join(
                f"{t} ({state.tasks[t].task.action} on {state.tasks[t].task.host_id})"
                for t in waiting[:5]
            )
        )
        parts.append(approvals)
    if state.status_reason and state.status is not MissionStatus.RUNNING:
        parts.append(Text(state.status_reason, style=STATUS_STYLE.get(state.status, "")))
    parts.append(
        Panel(
            render_events(events, limit=event_lines),
            title="events",
            title_align="left",
            border_style="dim",
        )
    )
    return Panel(Group(*parts), title=title, title_align="left", border_style="blue")


def render_recap(
    state: MissionState,
    *,
    usage: Mapping[str, Any] | None = None,
    limit: int = _MAX_RECAP_ROWS,
) -> Table:
    """The end-of-run summary: per resource for desired-state missions, else per stage."""
    if state.converges:
        return render_converge_recap(state, usage=usage, limit=limit)
    return render_stage_recap(state, usage=usage, limit=limit)


def render_stage_recap(
    state: MissionState,
    *,
    usage: Mapping[str, Any] | None = None,
    limit: int = _MAX_RECAP_ROWS,
) -> Table:
    """The end-of-run summary, one row per host (like Ansible's PLAY RECAP). Past `limit`
    hosts, only those of note (short of the goal, locked, failed, retried or refused) get a
    row, and one line sums up the rest."""
    by_host: dict[str, dict[str, int]] = {
        h: {"ok": 0, "failed": 0, "rejected": 0, "retries": 0} for h in state.hosts
    }
    for rec in state.tasks.values():
        counts = by_host.get(rec.task.host_id)
        if counts is None:
            continue
        counts["retries"] += rec.task.attempt - 1
        if rec.status is TaskStatus.SUCCEEDED:
            counts["ok"] += 1
        elif rec.status is TaskStatus.FAILED:
            counts["failed"] += 1
        elif rec.status is TaskStatus.REJECTED:
            counts["rejected"] += 1
    reached, total = goal_progress(state)
    title = (
        f"{state.mission_id}: {state.status.value} — goal {state.goal.value} on "
        f"{reached}/{total} hosts"
    )
    table = Table(
        title=title, title_style=STATUS_STYLE.get(state.status, "bold"), header_style="bold"
    )
    for col in ("host", "os", "stage", "ok", "failed", "retries", "locked", "last error"):
        table.add_column(col, justify="right" if col in ("ok", "failed", "retries") else "left")
    hosts = sorted(state.hosts.values(), key=lambda h: h.host_id)
    rest: list[HostState] = []
    unlisted_of_note = 0
    if len(hosts) > limit:

        def of_note(h: HostState) -> bool:
            c = by_host[h.host_id]
            short = h.stage.rank < state.goal.rank
            return short or h.locked or bool(h.last_error) or any(c[k] for k in _NOTABLE)

        noted = sorted((h for h in hosts if of_note(h)), key=_attention)
        listed = {h.host_id for h in noted[:limit]}
        hosts, rest = noted[:limit], [h for h in hosts if h.host_id not in listed]
        unlisted_of_note = len(noted) - len(hosts)
    for host in hosts:
        c = by_host[host.host_id]
        table.add_row(
            host_label(host),
            host.os,
            host.stage.value,
            Text(str(c["ok"]), style="green"),
            Text(str(c["failed"]), style="red" if c["failed"] else "dim"),
            str(c["retries"]),
            Text("yes", style="bold red") if host.locked else Text("no", style="dim"),
            (host.last_error or "")[:60],
        )
    if rest:
        sums = {k: sum(by_host[h.host_id][k] for h in rest) for k in ("ok", "failed", "retries")}
        table.add_section()
        more = f"{len(rest)} more" + (f", {unlisted_of_note} of note" if unlisted_of_note else "")
        table.add_row(
            Text(more, style="dim"),
            "",
            Text(_by_stage(rest), style="dim"),
            Text(str(sums["ok"]), style="green"),
            Text(str(sums["failed"]), style="red" if sums["failed"] else "dim"),
            str(sums["retries"]),
            Text(str(sum(h.locked for h in rest)), style="dim"),
            Text(f"every host: reaper status {state.mission_id} --json", style="dim"),
        )
    caption = state.status_reason
    usage_line = render_usage(usage)
    if usage_line is not None:
        caption += f"\n{usage_line.plain}"
    table.caption = caption
    return table


_RECAP_COLUMNS = CONVERGE_COUNTS
_CHECK_HEADS = {"added": "to add", "changed": "to change"}  # a check run's counts


def render_converge_recap(
    state: MissionState, *, usage: Mapping[str, Any] | None = None, limit: int = _MAX_RECAP_ROWS
) -> Table:
    """The end of a desired-state run: per host what was added, changed, already ok, failed
    and blocked, then each failed or blocked resource with why (and its output's last line)."""
    p = progress(state)
    t = p.tally()
    title = f"{state.mission_id}: {state.status.value} — {t['ok']}/{sum(t.values())} resources"
    if state.check_mode:  # ok there counts what would change: say what a run would do
        would, _ = would_change_counts(p)
        title = (
            f"{state.mission_id}: {state.status.value} — check mode: "
            f"{would}/{sum(t.values())} resources would change, nothing changed"
        )
    table = Table(
        title=title, title_style=STATUS_STYLE.get(state.status, "bold"), header_style="bold"
    )
    table.add_column("host")
    table.add_column("os")
    for col in _RECAP_COLUMNS:
        head = _CHECK_HEADS.get(col, col) if state.check_mode else col
        table.add_column(head, justify="right")
    table.add_column("locked")
    styles = {"added": "green", "changed": "yellow", "ok": "dim", "failed": "red", "blocked": "red"}
    hosts = sorted(state.hosts.values(), key=lambda h: h.host_id)
    for host in hosts[:limit]:
        c = converge_counts(p, host)
        table.add_row(
            host_label(host),
            host.os,
            *(Text(str(c[k]), style=styles[k] if c[k] else "dim") for k in _RECAP_COLUMNS),
            Text("yes", style="bold red") if host.locked else Text("no", style="dim"),
        )
    if len(hosts) > limit:
        table.add_row(Text(f"… {len(hosts) - limit} more", style="dim"))
    lines = [state.status_reason]
    for node, status in p:
        if status == "ok" or len(lines) >= 21:
            continue
        rs = p.resource_state(node)
        tail = rs.output_tail.strip().splitlines()[-1:] if status == "failed" else []
        why = p.why.get(node, status)
        if tail and tail[0][:60] not in why:  # the error often quotes the output already
            why += f" — {tail[0][:100]}"
        # Left short of its state with nothing failed (a restart the policy refused):
        # named too, with what it still waits for.
        label = status if status in ("failed", "blocked") else "not converged"
        lines.append(f"{label} {node}: {why}"[:400])
    usage_line = render_usage(usage)
    if usage_line is not None:
        lines.append(usage_line.plain)
    table.caption = "\n".join(lines)
    return table


def render_missions(rows: Sequence[Any]) -> Table:
    """`reaper status` with no mission: one line per mission (the reason wraps, whole)."""
    table = Table(header_style="bold", box=box.SIMPLE_HEAD)
    for col in ("mission", "lab type", "status", "hosts", "updated"):
        table.add_column(col, no_wrap=True, justify="right" if col == "hosts" else "left")
    table.add_column("reason", ratio=1)
    for m in rows:
        table.add_row(
            m.mission_id,
            m.lab_type,
            Text(m.status.value, style=STATUS_STYLE.get(m.status, "")),
            f"{m.hosts:,}",
            m.updated_at.strftime("%Y-%m-%d %H:%M"),
            m.status_reason,
        )
    return table
