"""The rule converger: desired-state missions (lab schema 2), planned from the diff.

Per host, at most one task at a time:
- a resource not read yet → discover, asking for every declared resource of the host;
- else the first resource in graph order whose status is `todo` (it differs and every
  prerequisite is settled) → its `ensure_<kind>`, in check mode when the mission is;
- a failure the rules know (`KNOWN_RECOVERIES`), once per resource (then it stays failed):
  a full disk → cleanup, a pending reboot → reboot, after which the resource is tried again
  (`reaper.actions.CLEARS`); a held package-manager lock (retriable: the engine already
  retried it with backoff) → wait `LOCK_WAIT_S`, then ensure again; a missing prerequisite
  the tool names (`reaper.planners.prereq`) → ensure it, then the resource again;
- nothing to ensure but changes not read back → a final read-only discover (completion
  requires no drift);
- a change that reported `reboot_required` and is read back → reboot the host, then read it
  back again (an operator who refuses the reboot leaves the lab converged as it was read);
- anything else that failed stays failed; its dependents are blocked; the rest goes on.

Work per wake-up is proportional to what changed: the hosts named in the results, plus the
hosts of resources that a result settled or failed, or that a reboot put in effect, and
that others wait for (their dependents, found through the graph), never a scan of the lab. A
change that waits for its host's restart holds its dependents until that reboot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from reaper.desired.identity import Ref
from reaper.desired.memo import as_json
from reaper.desired.progress import Progress, host_has_unseen, progress
from reaper.models import (
    HostState,
    MissionState,
    PlannedTask,
    ResourceState,
    ResultEvent,
    TaskStatus,
)
from reaper.planners.base import Plan, planned_task
from reaper.planners.prereq import prerequisite

__all__ = ["KNOWN_RECOVERIES", "LOCK_WAIT_S", "Converger", "known_fix"]

# failure class → how the rules fix it: a verb run first (the resource is retried once it
# succeeds), `retry` (ensure again after a wait) or `prerequisite` (ensure what is missing).
KNOWN_RECOVERIES = {
    "DISK_FULL": "cleanup",
    "REBOOT_PENDING": "reboot",
    "PM_LOCKED": "retry",
    "MISSING_DEPENDENCY": "prerequisite",
}
# How long to leave a package manager's lock holder (an unattended upgrade) before one more
# try: the engine's own retries of the task (1 s, 2 s) were not enough.
LOCK_WAIT_S = 60.0
FATAL_FOR_HOST = frozenset(
    {"AUTH_FAILED", "HOST_KEY_MISMATCH", "HOST_KEY_UNKNOWN", "PERMISSION_DENIED",
     "CERT_INVALID", "INSECURE_TRANSPORT", "UNSUPPORTED_TRANSPORT", "UNKNOWN_HOST",
     "CREDENTIALS_MISSING", "AUTH_UNSUPPORTED", "TLS_ERROR"}
)  # fmt: skip


class Converger:
    """Plans desired-state missions; `RuleBasedPlanner` hands them to it."""

    name = "rule"
    replans_after_refusal = True

    async def initial_tasks(self, state: MissionState) -> Plan:
        p = progress(state)
        tasks = [t for h in state.hosts.values() if (t := self._next(p, h, "start")) is not None]
        return Plan(tasks=tasks, decision={"planner": self.name, "rules": "converge"})

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        p = progress(state)
        # host → its latest result in the batch (None: a dependent's host, unblocked)
        hosts: dict[str, ResultEvent | None] = {}
        for r in results:
            hosts[r.host_id] = r  # in the order of each host's first result
        # A settled resource may make its direct dependents ready, on any host; deeper ones
        # wait for those (and a failure's blocked dependents need no task at all).
        for node in self._touched(p, results):
            for after in p.lab.graph.dependents(node):
                hosts.setdefault(after.host, None)
        tasks: list[PlannedTask] = []
        for host_id, last in hosts.items():
            host = state.hosts.get(host_id)
            if host is None:
                continue
            task = self._next(p, host, _why(last))
            if task is not None:
                tasks.append(task)
        return Plan(tasks=tasks, decision={"planner": self.name, "results": len(results)})

    async def replan_hosts(self, state: MissionState, host_ids: Sequence[str]) -> Plan:
        """After the policy refused a proposal on these hosts (its resource is now failed):
        what each can do next."""
        p = progress(state)
        tasks = [
            t
            for h in host_ids
            if (host := state.hosts.get(h)) is not None
            and (t := self._next(p, host, "after a refusal")) is not None
        ]
        return Plan(tasks=tasks, decision={"planner": self.name, "rules": "after refusal"})

    @staticmethod
    def _touched(p: Progress, results: Iterable[ResultEvent]) -> list[Ref]:
        out: list[Ref] = []
        for r in results:
            if r.ok and r.action.endswith(".reboot"):
                # The changes that waited for this restart are in effect now: what depends on
                # them (a member's join waits for the DC's promotion) may go on.
                out.extend(p.host_nodes(r.host_id))
                continue
            named = (
                r.data.get("resource") if r.action.partition(".")[2].startswith("ensure_") else None
            )
            if isinstance(named, str) and "/" in named:
                kind, _, name = named.partition("/")
                ref = Ref(r.host_id, kind, name)
                if ref in p.lab.graph:  # an LLM's fix may ensure an undeclared resource
                    out.append(ref)
        return out

    def _next(self, p: Progress, host: HostState, why: str) -> PlannedTask | None:
        if host.locked or host.current_action is not None or not host.resources:
            return None
        if _fatal(host):
            return None
        if host_has_unseen(host):
            return self._discover(p, host, f"{why}: read the declared resources")
        settled = False
        for node, status in p.host_statuses(host.host_id):
            if status == "todo":
                return self.ensure_task(p, host, node, why)
            if status == "failed":
                fix = self._recovery(p, host, node)
                if fix is not None:
                    return fix
            elif status == "settled":
                settled = True
        if settled:
            return self._discover(p, host, f"{why}: read back what changed (no drift allowed)")
        nodes = p.host_nodes(host.host_id)
        if not p.state.check_mode and any(p.resource_state(n).reboot_required for n in nodes):
            return PlannedTask(
                host_id=host.host_id,
                action=f"{host.os}.reboot",
                params={},
                reason=f"{why}: a change waits for a restart; reboot, then read back",
            )
        return None

    @staticmethod
    def _discover(p: Progress, host: HostState, reason: str) -> PlannedTask:
        params = {"resources": host.desired}
        return planned_task(host.host_id, f"{host.os}.discover", reason, params)

    @staticmethod
    def ensure_task(p: Progress, host: HostState, node: Ref, why: str) -> PlannedTask:
        """The task that brings `node` to its declared state (`why` opens its reason)."""
        resource = p.lab.resources[node]
        # As declared (shared, never mutated): the engine resolves a dns_client's
        # `servers_from` for every planner.
        spec: dict[str, Any] = as_json(resource)
        diff = p.diff(node)
        detail = str(diff).partition("  ")[2]
        return planned_task(
            host.host_id,
            f"{host.os}.ensure_{node.kind}",
            (f"{why}: {diff.action} {node.rid}" + (f" ({detail})" if detail else ""))[:300],
            {"resource": spec, "check_mode": p.state.check_mode},
        )

    def _recovery(self, p: Progress, host: HostState, node: Ref) -> PlannedTask | None:
        rs = p.resource_state(node)
        verb = known_fix(rs, p.lab.keys[node])
        if verb is None or p.state.check_mode:
            return None
        if verb == "retry":
            task = self.ensure_task(
                p, host, node, f"{rs.error_code}: waited {LOCK_WAIT_S:.0f}s, retry"
            )
            return task.model_copy(update={"delay_s": LOCK_WAIT_S})
        if verb == "prerequisite":
            spec = prerequisite(node.kind, rs.output_tail)
            assert spec is not None  # known_fix said so
            action = f"{host.os}.ensure_{spec['kind']}"
            tried = _last_try(p.state, host, action, spec)
            if tried is TaskStatus.SUCCEEDED:
                return self.ensure_task(p, host, node, f"{spec['kind']}/{spec['name']} is there")
            if tried is not None:
                return None  # the prerequisite itself failed: the resource stays failed
            return PlannedTask(
                host_id=host.host_id,
                action=action,
                params={"resource": spec, "check_mode": False},
                reason=f"{node.rid} failed with MISSING_DEPENDENCY: "
                f"{spec['kind']}/{spec['name']} first",
            )
        return PlannedTask(
            host_id=host.host_id,
            action=f"{host.os}.{verb}",
            params={},
            reason=f"{node.rid} failed with {rs.error_code}: {verb} first, then retry it",
        )


def known_fix(rs: ResourceState, rid: str) -> str | None:
    """How the rules fix the failed resource `rid` (`KIND/NAME`), while they have tries left
    (None: a failure the rules do not know, or their fix was already tried)."""
    verb = KNOWN_RECOVERIES.get(rs.error_code or "")
    if verb == "prerequisite" and prerequisite(rid.partition("/")[0], rs.output_tail) is None:
        return None  # nothing the tool named that the rules could install
    return verb if verb is not None and rs.attempts < 2 else None


def _last_try(
    state: MissionState, host: HostState, action: str, spec: dict[str, Any]
) -> TaskStatus | None:
    """How the host's latest `action` on the resource `spec` ended, among its recent tasks."""
    for task_id in reversed(host.last_tasks):
        rec = state.tasks.get(task_id)
        if rec is None or rec.task.action != action:
            continue
        got = rec.task.params.get("resource") or {}
        if got.get("kind") == spec["kind"] and got.get("name") == spec["name"]:
            return rec.status
    return None


def _fatal(host: HostState) -> bool:
    error = host.last_error
    if not error:
        return False  # the common case, on every host of every wake-up
    return any(error.startswith(code + ":") for code in FATAL_FOR_HOST)


def _why(last: ResultEvent | None) -> str:
    if last is None:
        return "unblocked"
    verb = last.action.partition(".")[2]
    return f"{verb} {'succeeded' if last.ok else 'failed (' + (last.error_code or 'error') + ')'}"
