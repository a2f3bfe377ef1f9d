"""A dns_client's `servers_from` names lab hosts; the engine turns them into addresses for
every planner (an LLM passes the declaration as given), and never sends a name to an agent."""

from __future__ import annotations

from datetime import UTC, datetime

from reaper.agents.oscode.linux_args import UNRESOLVED_SERVERS, argument_problem
from reaper.desired.parse import parse_resource
from reaper.engine.admission import plan
from reaper.engine.state import Transition
from reaper.lab import parse_lab
from reaper.models import EventKind, MissionState, PlannedTask, replace
from reaper.policy import PRESETS

LAB = """
schema_version: 2
mission_id: dns
defaults: {transport: sim}
roles:
  dc:
    - {kind: package, name: bind9}
  member:
    - {kind: dns_client, name: default, servers_from: [dc-01]}
hosts:
  - {host_id: dc-01, os: linux, roles: [dc]}
  - {host_id: web-01, os: linux, roles: [member]}
"""
DECLARED = {"kind": "dns_client", "name": "default", "servers_from": ["dc-01"]}
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _state(dc_address: str | None) -> MissionState:
    state = parse_lab(LAB).to_state()
    dc = state.hosts["dc-01"]
    facts = {"addresses": [{"iface": "eth0", "addr": dc_address}]} if dc_address else {}
    state.hosts["dc-01"] = replace(dc, facts=facts, connection=replace(dc.connection, address=None))
    return state


def _propose(state: MissionState) -> Transition:
    proposal = PlannedTask(
        host_id="web-01",
        action="linux.ensure_dns_client",
        params={"resource": DECLARED},
        reason="point the resolver at the DC",
    )
    return plan(state, [proposal], step=1, policy=PRESETS["standard"], now=NOW, planner="llm")


def test_an_llm_proposal_naming_hosts_is_sent_with_their_addresses() -> None:
    tr = _propose(_state("10.0.0.5"))
    [task] = [r.task for r in tr.tasks.values()]
    resource = task.params["resource"]
    assert resource["servers"] == ["10.0.0.5"] and resource["servers_from"] == []


def test_an_unknown_address_is_a_recorded_refusal_not_a_short_resolver() -> None:
    tr = _propose(_state(None))
    assert not tr.tasks
    [refused] = [e for e in tr.events if e.kind is EventKind.TASK_REFUSED]
    assert "address of dc-01 is not known yet" in str(refused.payload)


def test_a_linux_agent_refuses_a_name_it_cannot_resolve() -> None:
    assert argument_problem(parse_resource(DECLARED, "roles.member[0]")) == UNRESOLVED_SERVERS
    resolved = parse_resource({**DECLARED, "servers": ["10.0.0.5"], "servers_from": []}, "m")
    assert argument_problem(resolved) is None
