"""`update_password` on user and ad_user (as Ansible's user modules): the password is set at
creation (`on_create`, the default) or on every run (`always`). A password cannot be read
back, so `always` makes an existing account differ by its password on every run, and once an
ensure of the mission set it, the account counts as converged."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.desired import parse_resource
from reaper.desired.diff import PASSWORD, diff_resource, only_password, reported_fields
from reaper.desired.progress import progress
from reaper.errors import ConfigError
from reaper.lab import parse_lab
from reaper.models import ResourceState, replace

SEEN = {"state": "present", "groups": [], "enabled": True}


def _user(kind: str = "user", **extra: Any) -> Any:
    return parse_resource({"kind": kind, "name": "deploy", "password_env": "PW", **extra}, "t")


@pytest.mark.parametrize("kind", ["user", "ad_user"])
def test_on_create_is_the_default_and_always_needs_a_password_to_set(kind: str) -> None:
    assert _user(kind).update_password == "on_create"
    assert "update_password" not in reported_fields(kind)  # nothing a host shows
    with pytest.raises(ConfigError, match="update_password: always needs password_env"):
        parse_resource({"kind": kind, "name": "x", "update_password": "always"}, "t")
    with pytest.raises(ConfigError, match="update_password"):
        _user(kind, update_password="sometimes")


@pytest.mark.parametrize("kind", ["user", "ad_user"])
def test_always_makes_an_existing_account_differ_by_its_password_only(kind: str) -> None:
    ref = _user(kind).rid.on("h")
    assert diff_resource(ref, _user(kind), SEEN).action == "ok"
    always = _user(kind, update_password="always")
    diff = diff_resource(ref, always, SEEN)
    assert only_password(diff) and [c.field for c in diff.changes] == [PASSWORD]
    assert "cannot be read" in str(diff)
    assert diff_resource(ref, always, None).action == "add"  # created with it
    enabled = _user(kind, update_password="always", enabled=True)
    assert not only_password(diff_resource(ref, enabled, {**SEEN, "enabled": False}))


def test_macos_refuses_always_it_does_not_set_passwords() -> None:
    always = _user(update_password="always")
    assert always.os_problem("macos") is not None
    assert always.os_problem("linux") is None and _user().os_problem("macos") is None


LAB = """
schema_version: 2
mission_id: pw
lab_type: pw
defaults: {transport: sim}
roles:
  r:
    - {kind: user, name: deploy, password_env: PW, update_password: always}
hosts:
  - {host_id: h1, os: linux, roles: [r]}
"""


def test_an_always_account_is_todo_until_this_missions_ensure_set_it() -> None:
    state = parse_lab(LAB).to_state()
    node = next(iter(progress(state).lab.graph.order))

    def status(rs: ResourceState) -> str:
        host = state.hosts["h1"]
        state.hosts["h1"] = replace(host, resources={"user/deploy": rs})
        return progress(state).status(node)

    assert status(ResourceState(seen=True, observed=SEEN)) == "todo"
    ensured = ResourceState(seen=True, observed=SEEN, outcome="changed", verified=False)
    assert status(ensured) == "settled"
    assert status(replace(ensured, verified=True)) == "ok"  # read back: converged
