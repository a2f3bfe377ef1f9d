"""`reaper plan LAB`: discover read-only, then show per host what a run would do to each
declared resource (`+ add`, `~ change before → after`, `- remove`, `= ok`) and the order it
would run in. Nothing is changed and nothing is kept: the mission runs in memory, with only
discovers (read-only) allowed by a read-only policy whatever the lab says. Simulated hosts are
read from the sim worlds of the configured store (what a `reaper run` of the lab left there),
through a view that refuses every write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from reaper.agents.base import ActionRunner
from reaper.agents.runners import default_runners
from reaper.cli.context import EXIT_INCOMPLETE, EXIT_OK, Cli, cli_backend
from reaper.desired.diff import FieldChange, ResourceDiff
from reaper.desired.identity import Ref
from reaper.desired.progress import Progress, progress
from reaper.errors import BackendError, ConfigError
from reaper.infra.base import Backend, SimWorldStore, StoredWorld, WorldWrite, sim_worlds_of
from reaper.infra.memory import memory_backend
from reaper.lab import LabFile, load_lab
from reaper.models import MissionState, ResultEvent
from reaper.overseer import Overseer
from reaper.planners.base import Plan
from reaper.planners.converge import Converger
from reaper.policy import Decision, Policy, check
from reaper.runtime import LocalWorkers

__all__ = ["cmd_plan", "discover_lab", "plan_report"]

_SIGN = {"add": "+", "change": "~", "remove": "-", "ok": "="}
_STYLE = {"add": "green", "change": "yellow", "remove": "red", "ok": "dim"}
_VERDICT = {"deny": ("bold red", "refused"), "ask": ("magenta", "asks for approval")}
_PLAN_TIMEOUT_S = 600.0


class _DiscoverOnly:
    """The converger's first step (a discover of every declared resource) and nothing more."""

    name = "plan"

    def __init__(self) -> None:
        self._converger = Converger()

    async def initial_tasks(self, state: MissionState) -> Plan:
        return await self._converger.initial_tasks(state)

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        return Plan()


class _ReadOnlyWorlds:
    """A store's sim worlds as a plan sees them: its missions (ids the store does not know)
    run `lab`, and nothing is written."""

    def __init__(self, worlds: SimWorldStore, lab: str) -> None:
        self._worlds, self._lab = worlds, lab

    async def lab_of(self, mission_id: str) -> str | None:
        return self._lab

    async def load_world(
        self, lab: str, host_id: str, *, known_version: int = 0
    ) -> StoredWorld | None:
        return await self._worlds.load_world(lab, host_id, known_version=known_version)

    async def load_lab(
        self, lab: str, known: Mapping[str, int] | None = None
    ) -> dict[str, StoredWorld]:
        return await self._worlds.load_lab(lab, known)

    async def save_worlds(self, lab: str, writes: Sequence[WorldWrite]) -> list[int]:
        raise BackendError("reaper plan changes nothing: a sim world write was refused")

    async def clear_worlds(
        self, lab: str | None = None, host_id: str | None = None
    ) -> list[tuple[str, str]]:
        raise BackendError("reaper plan changes nothing: clearing sim worlds was refused")


def _read_only(lab: LabFile) -> LabFile:
    if lab.schema_version < 2:
        raise ConfigError(f"{lab.lab_type}: reaper plan needs a desired-state lab (schema 2)")
    return lab.model_copy(update={"policy": "read-only", "planner": lab.planner.model_copy(
        update={"kind": "rule"})})  # fmt: skip


async def discover_lab(
    lab: LabFile, *, concurrency: int = 32, runners: Mapping[str, ActionRunner] | None = None
) -> MissionState:
    """The lab's mission after one read-only discover of every host (in memory, dropped)."""
    lab = _read_only(lab)
    store, queue, bus = memory_backend()
    backend = Backend(store=store, queue=queue, bus=bus, description="memory")
    overseer = Overseer(backend, planner_factory=lambda _: _DiscoverOnly())
    workers = LocalWorkers(backend, concurrency=concurrency, seed=lab.seed, runners=runners)
    try:
        state = await overseer.create_mission(lab, f"plan-{uuid.uuid4().hex[:8]}")
        workers.start()
        return await asyncio.wait_for(overseer.start(state.mission_id), _PLAN_TIMEOUT_S)
    finally:
        await overseer.stop_all()
        await workers.stop()
        await backend.close()


def _verdict(p: Progress, node: Ref, policy: Policy) -> dict[str, str] | None:
    """What the lab's policy would say of the ensure a run plans for `node` (None: allowed):
    a refusal (a lockout, a denied risk tier) or a question, known before anything runs."""
    host = p.state.hosts[node.host]
    verdict = check(Converger.ensure_task(p, host, node, "plan"), p.state, policy)
    if verdict.decision is Decision.ALLOW:
        return None
    return {"decision": verdict.decision.value, "code": verdict.code, "reason": verdict.reason}


def plan_report(p: Progress, policy: Policy | None = None) -> dict[str, Any]:
    """The plan as data: per host each resource's action and changes, then the run order;
    with the lab's `policy`, each change the policy would refuse or ask about says so."""
    hosts: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []
    unread: list[str] = []
    for node in p.lab.graph.order:
        rs = p.resource_state(node)
        entry: dict[str, Any] = {"resource": str(node.rid)}
        if not rs.seen:
            entry |= {"action": "unknown"}
            unread.append(node.host)
        else:
            d: ResourceDiff = p.diff(node)
            entry |= {
                "action": d.action,
                "changes": [
                    {"field": c.field, "before": c.before, "after": c.after} for c in d.changes
                ],
            }
            if d.action != "ok":
                order.append(str(node))
                verdict = None if policy is None else _verdict(p, node, policy)
                if verdict is not None:
                    entry["policy"] = verdict
            if rs.reboot_required:  # done, completed by a restart (a promotion, a join)
                entry["restart_pending"] = True
        waits = [str(b) for b in p.lab.graph.prerequisites(node)]
        if waits:
            entry["after"] = waits
        hosts.setdefault(node.host, []).append(entry)
    counts = {a: sum(1 for h in hosts.values() for e in h if e["action"] == a) for a in _SIGN}
    for decision in ("deny", "ask"):
        counts[decision] = sum(
            1 for h in hosts.values() for e in h if e.get("policy", {}).get("decision") == decision
        )
    errors = {
        h.host_id: h.last_error
        for h in p.state.hosts.values()
        if h.host_id in unread and h.last_error
    }
    return {"hosts": hosts, "order": order, "summary": counts, "unread": errors}


def _render(cli: Cli, report: dict[str, Any], graph: str | None) -> None:
    for host, entries in report["hosts"].items():
        cli.out.print(Text(host, style="bold"))
        for e in entries:
            action = e["action"]
            if action == "unknown":
                why = report["unread"].get(host, "not discovered")
                cli.out.print(Text(f"  ? {e['resource']}  (could not read: {why})", "red"))
                continue
            line = Text(f"  {_SIGN[action]} {e['resource']}", style=_STYLE[action])
            if action == "change":
                changes = ", ".join(
                    str(FieldChange(c["field"], c["before"], c["after"])) for c in e["changes"]
                )
                line.append(f"  ({changes})")
            if e.get("restart_pending"):
                line.append("  (done; waits for a restart)", style="yellow")
            verdict = e.get("policy")
            if verdict is not None and verdict["decision"] == "ask":
                line.append("  (asks for approval)", style=_VERDICT["ask"][0])
            cli.out.print(line)
            if verdict is not None and verdict["decision"] == "deny":
                # Why, in full: a refusal is the one thing of a plan that needs reading.
                cli.out.print(Text(f"      refused: {verdict['reason']}", style="bold red"))
    if report["order"]:
        cli.out.print(Text("\norder of the run:", style="bold"))
        verdicts = {
            f"{host}:{e['resource']}": e["policy"]["decision"]
            for host, entries in report["hosts"].items()
            for e in entries
            if "policy" in e
        }
        for i, node in enumerate(report["order"], start=1):
            line = Text(f"  {i:>3}  {node}")
            if node in verdicts:
                style, label = _VERDICT[verdicts[node]]
                line.append(f"  ({label})", style=style)
            cli.out.print(line)
    if graph is not None:
        cli.out.print(Text("\ndependency graph:", style="bold"))
        # Whole lines: a wrap at ", " would read as two entries.
        cli.out.print(graph, markup=False, highlight=False, soft_wrap=True)
    s = report["summary"]
    cli.out.print(
        f"\nplan: {s['add']} to add, {s['change']} to change, {s['remove']} to remove, "
        f"{s['ok']} ok"
        + (f", {s['unknown']} unreadable" if s.get("unknown") else "")
        + (f"; {s['deny']} refused by the policy" if s.get("deny") else "")
        + (f"; {s['ask']} to approve" if s.get("ask") else ""),
        soft_wrap=True,  # one line, for a script's grep
    )


async def cmd_plan(cli: Cli) -> int:
    lab = load_lab(cli.args.lab)
    first_sim = next((h.host_id for h in lab.hosts if h.transport == "sim"), None)
    if first_sim is not None:
        # The sim hosts' worlds are in the store: only then does a plan need the backend.
        async with cli_backend(cli) as backend:
            stored = sim_worlds_of(backend.store)
            worlds = None
            if stored is not None:
                # A store that cannot be reached: one line and exit 4 now, not a failed
                # discover per simulated host.
                await stored.load_world(lab.lab_type, first_sim)
                worlds = _ReadOnlyWorlds(stored, lab.lab_type)
            runners = default_runners(seed=lab.seed, worlds=worlds)
            state = await discover_lab(lab, concurrency=cli.config.concurrency, runners=runners)
    else:
        state = await discover_lab(lab, concurrency=cli.config.concurrency)
    p = progress(state)
    report = plan_report(p, lab.resolved_policy())
    report["summary"]["unknown"] = sum(
        1 for h in report["hosts"].values() for e in h if e["action"] == "unknown"
    )
    if cli.args.json:
        report["graph"] = [
            {"resource": str(n), "after": [str(b) for b in p.lab.graph.prerequisites(n)]}
            for n in p.lab.graph.order
        ]
        cli.print_json(report)
    else:
        _render(cli, report, p.lab.graph.render() if cli.args.graph else None)
    return EXIT_INCOMPLETE if report["unread"] or report["summary"]["unknown"] else EXIT_OK
