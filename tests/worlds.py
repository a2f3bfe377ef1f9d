"""A small world of resources for desired-state tests: an `ActionRunner` that answers
discover and ensure_* as the action contract says (reaper.actions), and can be told to fail a
resource with a failure class and the tool's text. The sim world (`reaper.agents.transports.
sim_world`) is the full model; this one keeps tests about the engine and converger short."""

from __future__ import annotations

from typing import Any

from reaper.agents.base import ActionOutcome
from reaper.desired import parse_resource
from reaper.desired.diff import desired_properties
from reaper.models import HostConnection, ResultStatus, Task

__all__ = ["LAB", "World"]

LAB = """
schema_version: 2
mission_id: web
lab_type: web
defaults: {transport: sim}
roles:
  web:
    - {kind: package, name: nginx}
    - {kind: file, path: /etc/nginx/conf.d/app.conf, content: "listen 8080;\\n", notify: [nginx]}
    - {kind: service, name: nginx, state: running, enabled: true}
    - {kind: user, name: deploy}
hosts:
  - {host_id: web-01, os: linux, roles: [web]}
  - {host_id: web-02, os: linux, roles: [web]}
"""


class World:
    """Resources per host: (host, KIND/NAME) → observed properties (absent when missing)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail: dict[tuple[str, str], tuple[str, str]] = {}  # → (error code, stderr)
        self.log: list[tuple[str, str]] = []  # (host, action)

    async def close(self) -> None:
        return None

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        verb = task.action.partition(".")[2]
        self.log.append((host_id, task.action))
        if verb == "discover":
            found = {}
            for spec in task.params.get("resources") or ():
                rid = str(parse_resource(spec, "t").rid)
                found[rid] = self.seen.get((host_id, rid))
            return ActionOutcome(
                status=ResultStatus.SUCCESS, summary="discovered",
                data={"addresses": [{"iface": "eth0", "addr": f"10.0.0.{len(host_id)}"}],
                      "resources": found},
            )  # fmt: skip
        if verb == "cleanup":
            for key, (code, _) in list(self.fail.items()):
                if key[0] == host_id and code == "DISK_FULL":
                    del self.fail[key]
            return ActionOutcome(status=ResultStatus.SUCCESS, summary="cleaned", data={})
        resource = parse_resource(task.params["resource"], "t")
        rid = str(resource.rid)
        key = (host_id, rid)
        if key in self.fail:
            code, stderr = self.fail[key]
            return ActionOutcome(
                status=ResultStatus.ERROR, summary=f"{rid} failed", error_code=code,
                stderr_tail=stderr, data={"resource": rid, "before": self.seen.get(key)},
            )  # fmt: skip
        before = self.seen.get(key)
        after = desired_properties(resource)
        if "content" in after:  # files are reported by digest (`reported_fields`)
            after["sha256"] = after.pop("content")
        check = bool(task.params.get("check_mode"))
        result = "unchanged" if before == after else ("would_change" if check else "changed")
        if result == "changed":
            self.seen[key] = after
        return ActionOutcome(
            status=ResultStatus.SUCCESS, summary=f"{rid} {result}",
            data={"resource": rid, "result": result, "before": before, "after": after,
                  "reboot_required": False},
        )  # fmt: skip

    def ensures(self, host: str | None = None) -> list[str]:
        return [a for h, a in self.log if ".ensure_" in a and (host is None or h == host)]
