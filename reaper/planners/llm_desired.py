"""The LLM planner's user message for a desired-state mission: the diff, not a stage.

Per host, in dependency order, each declared resource with its status (engine-derived:
`reaper.desired.progress`) and what it waits for; the declarations of those not converged (the
operator's lab file: what an ensure must be given); the host's recent tasks and refusals, so
the model sees its own earlier plans and the engine's loop refusals; the new results. What
the hosts said (facts, observed values and the diff built from them, error texts, output
tails) goes in the one untrusted block, redacted and cut, as in `llm_prompt`.

Which hosts are shown in detail: the ones named by the new results, then those with work to
do (a resource unknown, todo or failed, the host neither busy nor locked), up to
`PromptLimits.max_detail_hosts` — or exactly the `focus` hosts when a caller (the hybrid
planner) asks about a few. Rendering is deterministic (sorted, no clock, no randomness).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from llm.redact import scrub_text
from prompts import PLANNER_USER_DESIRED, load_prompt
from reaper.desired.identity import Ref
from reaper.desired.kinds import resource_of
from reaper.desired.progress import Progress, Status, progress
from reaper.models import HostState, MissionState, ResultEvent
from reaper.planners.llm_prompt import (
    PromptLimits,
    RenderedUser,
    cut_text,
    dumps_line,
    redact_value,
    result_line,
    result_output,
    shrink_json,
    untrusted_block,
)

__all__ = ["render_desired_user"]

_ACTIONABLE: frozenset[Status] = frozenset({"unknown", "todo", "failed"})
_NOT_DONE: frozenset[Status] = frozenset({"unknown", "todo", "waiting", "failed", "settled"})
_MAX_RESOURCES = 40  # per host shown; a bigger role is counted, not listed


# The facts a desired-state plan can use (what runs and listens, disk, package manager, OS,
# firewall, sshd, pending updates, domain, and the last diagnose's report and findings, which
# the plan acts on after looking): the rest (CPU, memory, kernel, addresses, audit
# settings, ...) costs a small model's context and decides nothing here.
_DESIRED_FACTS = (
    "computer",
    "diagnose",
    "disks",
    "firewall",
    "listening_ports",
    "os",
    "package_manager",
    "services",
    "sshd",
    "updates",
)


def _host_line(host: HostState, p: Progress) -> dict[str, Any]:
    tally = p.tally(host.host_id)
    total = sum(tally.values())
    line: dict[str, Any] = {
        "host_id": host.host_id,
        "os": host.os,
        "status": host.last_status.value,
        "failures": f"{host.failure_count}/{host.max_failures}",
        "converged": f"{tally['ok']}/{total}",
    }
    # Said only when true (the prompt says what they mean): most hosts are neither.
    if host.locked:
        line["locked"] = True
    if host.current_action is not None:
        line["busy"] = host.current_action
    return line


def _facts(host: HostState, limits: PromptLimits, secrets: Sequence[str]) -> dict[str, Any]:
    wanted = {k: v for k, v in host.facts.items() if k in _DESIRED_FACTS}
    # The OS's one readable name, and of sshd the port Reaper connects to (rule: never cut
    # that access); sshd options a lab declares are in its diff.
    os_facts, sshd = wanted.get("os"), wanted.get("sshd")
    if isinstance(os_facts, dict) and "pretty_name" in os_facts:
        wanted["os"] = os_facts["pretty_name"]
    if isinstance(sshd, dict) and "port" in sshd:
        wanted["sshd"] = {"port": sshd["port"]}
    return shrink_json(redact_value(wanted, secrets), limits.facts_chars)


def _resource_line(p: Progress, node: Ref) -> dict[str, Any]:
    status = p.status(node)
    rs = p.resource_state(node)
    line: dict[str, Any] = {"resource": p.lab.keys[node], "status": status}
    if status in ("waiting", "blocked"):
        # The graph is the operator's: its wording ("waiting for dc-01:ad_domain/lab.local")
        # is trusted; a failure's own text is not and stays in the untrusted block.
        why = p.why.get(node, "")
        line["why"] = why.split(" (", 1)[0] if status == "blocked" else why
    if status == "failed":
        line["error_code"] = rs.error_code or "NOT_CONVERGED"
    if rs.attempts:
        line["ensures"] = rs.attempts
    if rs.reboot_required:
        line["restart"] = True  # made, but in effect only once the host restarts
    return line


def _pick_hosts(state: MissionState, p: Progress, batch: Sequence[str], limit: int) -> list[str]:
    chosen = dict.fromkeys(batch)
    for host in sorted(state.hosts.values(), key=lambda h: h.host_id):
        if len(chosen) >= len(batch) + limit:
            break
        if host.host_id in chosen or host.locked or host.current_action is not None:
            continue
        if any(p.status(n) in _ACTIONABLE for n in p.host_nodes(host.host_id)):
            chosen[host.host_id] = None
    return sorted(chosen)


def _summary(state: MissionState, p: Progress, shown: int) -> str:
    tally = p.tally()
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(tally.items()))
    locked = sum(1 for h in state.hosts.values() if h.locked)
    busy = sum(1 for h in state.hosts.values() if h.current_action is not None)
    hidden = len(state.hosts) - shown
    return (
        f"resources: {statuses or 'none'}; {locked} locked; {busy} busy; {shown} shown in detail"
        + (f", {hidden} not shown (nothing to do now, or waiting their turn)" if hidden else "")
        + "."
    )


def _history(state: MissionState, host: HostState) -> dict[str, Any]:
    tasks = []
    for task_id in host.last_tasks:
        rec = state.tasks.get(task_id)
        if rec is None:
            continue
        entry: dict[str, Any] = {
            "step": rec.step,
            "action": rec.task.action,
            "status": rec.status.value,
        }
        rid = resource_of(rec.task.params, {})
        if rid is not None:
            entry["resource"] = rid
        elif isinstance(rec.task.params.get("resources"), list):
            entry["resources"] = len(rec.task.params["resources"])  # a discover: how many
        elif rec.task.params:
            entry["params"] = cut_text(dumps_line(rec.task.params), 200)
        if rec.last_error:
            entry["error_code"] = rec.last_error
        if rec.planned_by:
            entry["planned_by"] = rec.planned_by
        tasks.append(entry)
    out: dict[str, Any] = {"host_id": host.host_id, "tasks": tasks}
    if host.refusals:
        out["refused"] = list(host.refusals)
    return out


def _untrusted_host(
    host: HostState, p: Progress, nodes: Sequence[Ref], limits: PromptLimits, secrets: Sequence[str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"host_id": host.host_id, "facts": _facts(host, limits, secrets)}
    if host.last_error:
        entry["last_error"] = cut_text(scrub_text(host.last_error, secrets), limits.text_chars)
    resources: dict[str, Any] = {}
    for node in nodes:
        status = p.status(node)
        rs = p.resource_state(node)
        item: dict[str, Any] = {}
        if rs.seen and status in _NOT_DONE:
            item["diff"] = cut_text(scrub_text(str(p.diff(node)), secrets), limits.text_chars)
        if status == "failed":
            item["error"] = cut_text(
                scrub_text(rs.error or p.why.get(node, ""), secrets), limits.text_chars
            )
            if rs.output_tail:
                item["output_tail"] = cut_text(
                    scrub_text(rs.output_tail, secrets), limits.tail_chars, keep_end=True
                )
        if status == "blocked":
            item["why"] = cut_text(scrub_text(p.why.get(node, ""), secrets), limits.text_chars)
        if item:
            resources[p.lab.keys[node]] = item
    if resources:
        entry["resources"] = resources
    return entry


def _result_lines(
    state: MissionState,
    results: Sequence[ResultEvent],
    limits: PromptLimits,
    secrets: Sequence[str],
) -> tuple[list[str], list[dict[str, Any]]]:
    lines: list[str] = []
    untrusted: list[dict[str, Any]] = []
    shown = results[: limits.max_results]
    for index, r in enumerate(shown, start=1):
        line = result_line(index, r)
        named = r.data.get("resource")
        if isinstance(named, str):
            line["resource"] = named
        lines.append(dumps_line(line))
        # A discover's data is the host's facts, shown once already: repeat only what differs.
        host = state.hosts.get(r.host_id)
        facts = host.facts if host is not None else {}
        data = {
            k: v
            for k, v in r.data.items()
            if k not in ("resources", "resource") and not (k in facts and facts[k] == v)
        }
        output = result_output(index, r, limits, secrets)
        if data:
            output["data"] = shrink_json(redact_value(data, secrets), limits.facts_chars)
        untrusted.append(output)
    if len(results) > len(shown):
        rest = Counter(f"{r.action} {r.status.value}" for r in results[len(shown) :])
        counts = ", ".join(f"{n}x {what}" for what, n in sorted(rest.items()))
        lines.append(f"... and {len(results) - len(shown)} more: {counts}")
    return lines, untrusted


def render_desired_user(
    state: MissionState,
    results: Sequence[ResultEvent],
    *,
    max_tasks: int,
    limits: PromptLimits,
    secrets: Sequence[str] = (),
    focus: Collection[str] | None = None,
    prompts: str | None = None,
) -> RenderedUser:
    p = progress(state)
    ordered = sorted(results, key=lambda r: (r.host_id, r.task_id, r.attempt))
    if focus is not None:
        ordered = [r for r in ordered if r.host_id in focus]
    batch = sorted({r.host_id for r in ordered[: limits.max_results] if r.host_id in state.hosts})
    if focus is not None:
        detail = sorted(h for h in focus if h in state.hosts)
    else:
        detail = _pick_hosts(state, p, batch, limits.max_detail_hosts)
    host_lines: list[str] = []
    declared: list[str] = []
    history: list[str] = []
    untrusted: list[dict[str, Any]] = []
    for host_id in detail:
        host = state.hosts[host_id]
        nodes = p.host_nodes(host_id)
        shown = nodes[:_MAX_RESOURCES]
        host_lines.append(dumps_line(_host_line(host, p)))
        host_lines.extend("  " + dumps_line(_resource_line(p, n)) for n in shown)
        if len(nodes) > len(shown):
            host_lines.append(f"  ... and {len(nodes) - len(shown)} more resources")
        for node in shown:
            if p.status(node) in _NOT_DONE:
                spec = p.lab.resources[node].model_dump(mode="json", exclude_defaults=True)
                spec["kind"] = node.kind
                declared.append(dumps_line({"host_id": host_id, "resource": spec}))
        if host.last_tasks or host.refusals:
            history.append(dumps_line(_history(state, host)))
        untrusted.append(_untrusted_host(host, p, shown, limits, secrets))
    result_lines, result_data = _result_lines(state, ordered, limits, secrets)
    untrusted.extend(result_data)
    mode = (
        " in check mode (every ensure_* must set check_mode: true; nothing may change)"
        if state.check_mode
        else ""
    )
    text = load_prompt(PLANNER_USER_DESIRED, prompts).render(
        lab_type=state.lab_type,
        step=str(state.step + 1),
        mode=mode,
        max_tasks=str(max_tasks),
        host_count=str(len(state.hosts)),
        summary=_summary(state, p, len(detail)),
        hosts="\n".join(host_lines) or "(none)",
        declared="\n".join(declared) or "(none: every shown resource is converged)",
        history="\n".join(history) or "(none yet)",
        results="\n".join(result_lines)
        or ("(none: this is the first step)" if state.step == 0 else "(none)"),
        untrusted=untrusted_block(untrusted),
    )
    return RenderedUser(text=text, batch_hosts=batch, detail_hosts=detail)
