"""The converger's statuses are memoised across wake-ups (`Lab.memo`): after any sequence of
results, the memoised statuses and reasons equal a derivation from scratch."""

from __future__ import annotations

import random
from typing import Any

import pytest

from reaper.desired.diff import desired_properties
from reaper.desired.progress import Lab, Progress, addresses, lab_of
from reaper.lab import parse_lab
from reaper.models import MissionState, ResourceState, replace

# Cross-host prerequisites, a template over facts, a notify and a dns_client naming a host.
LAB = """
schema_version: 2
mission_id: memo
lab_type: memo
defaults: {transport: sim}
roles:
  db:
    - {kind: package, name: postgresql}
    - {kind: service, name: postgresql, state: running}
  web:
    - {kind: dns_client, name: default, servers_from: [db-01]}
    - {kind: package, name: nginx}
    - {kind: file, path: /etc/motd, template: "I am {{ hostname }}\\n"}
    - {kind: file, path: /etc/nginx/app.conf, content: "listen 80;\\n", notify: [nginx]}
    - {kind: service, name: nginx, state: running, after: ["db-01:service/postgresql"]}
    - {kind: user, name: deploy}
hosts:
  - {host_id: db-01, os: linux, roles: [db]}
  - {host_id: web-01, os: linux, roles: [web]}
  - {host_id: web-02, os: linux, roles: [web]}
"""


def _facts(host_id: str, hostname: str, addr: int) -> dict[str, Any]:
    return {"hostname": hostname, "addresses": [{"iface": "eth0", "addr": f"10.0.0.{addr}"}]}


def _start() -> MissionState:
    state = parse_lab(LAB).to_state()
    for i, (host_id, host) in enumerate(state.hosts.items()):
        state.hosts[host_id] = replace(host, facts=_facts(host_id, host_id, i + 1))
    return state


def _fresh(state: MissionState) -> Progress:
    """A Progress with nothing remembered: the full re-derivation."""
    lab = lab_of(state)
    fresh = Lab(lab.resources, lab.graph, lab.by_host, keys=dict(lab.keys), templated=lab.templated)
    return Progress(state, fresh)


def _random_state(rng: random.Random, p: Progress, rs: ResourceState, node: Any) -> ResourceState:
    host = p.state.hosts[node.host]
    matching = desired_properties(
        p.lab.resources[node], facts=host.facts, addresses=addresses(p.state)
    )
    observed = rng.choice([None, matching, {**matching, "drift": 1}])
    outcome = rng.choice([None, "changed", "unchanged", "would_change", "failed"])
    return replace(
        rs,
        seen=rng.random() < 0.8,
        observed=observed,
        outcome=outcome,
        error="E: boom" if outcome == "failed" else None,
        error_code="DISK_FULL" if outcome == "failed" else None,
        attempts=rng.randrange(3),
        verified=rng.random() < 0.6,
    )


def _step(rng: random.Random, state: MissionState, p: Progress) -> None:
    """One wake-up's worth of results: a few resources get new states, a host new facts (or
    a new address), and now and then the mission's mode flips."""
    nodes = list(p.lab.graph.order)
    for node in rng.sample(nodes, rng.randrange(1, 4)):
        host = state.hosts[node.host]
        key = p.lab.keys[node]
        new = _random_state(rng, p, host.resources[key], node)
        state.hosts[node.host] = replace(host, resources={**host.resources, key: new})
    if rng.random() < 0.2:
        host_id = rng.choice(list(state.hosts))
        host = state.hosts[host_id]
        facts = _facts(host_id, rng.choice([host_id, "renamed"]), rng.randrange(1, 4))
        state.hosts[host_id] = replace(host, facts=facts)
    if rng.random() < 0.1:
        state.settings = {**state.settings, "check_mode": not state.check_mode}


@pytest.mark.parametrize("seed", range(25))
def test_memoised_statuses_equal_a_full_rederivation(seed: int) -> None:
    rng = random.Random(seed)
    state = _start()
    for _ in range(40):
        p = Progress(state, lab_of(state))  # as a wake-up does: the Lab and its memo persist
        _step(rng, state, p)
        # A wake-up looks at some hosts only (the memo is partly stale for the others)...
        looked = Progress(state, lab_of(state))
        for node in rng.sample(list(looked.lab.graph.order), 3):
            looked.status(node)
        # ...and at any time every status, memoised or not, is what a fresh derivation says.
        memo, full = Progress(state, lab_of(state)), _fresh(state)
        assert dict(memo) == dict(full)
        assert memo.why == full.why


def test_a_settled_prerequisite_turns_its_dependent_from_waiting_to_todo() -> None:
    state = _start()
    lab = lab_of(state)
    db = next(n for n in lab.graph.order if n.host == "db-01" and n.kind == "package")

    def seen_absent(host_id: str) -> None:
        host = state.hosts[host_id]
        rs = {k: ResourceState(seen=True) for k in host.resources}
        state.hosts[host_id] = replace(host, resources=rs)

    for h in state.hosts:
        seen_absent(h)
    service = db._replace(kind="service")
    assert Progress(state, lab).status(service) == "waiting"
    host = state.hosts["db-01"]
    observed = desired_properties(lab.resources[db])
    done = ResourceState(seen=True, observed=observed, outcome="changed", verified=False)
    state.hosts["db-01"] = replace(host, resources={**host.resources, lab.keys[db]: done})
    assert Progress(state, lab).status(service) == "todo"
    assert Progress(state, lab).status(db) == "settled"
