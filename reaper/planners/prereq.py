"""The prerequisite a `MISSING_DEPENDENCY` failure names, as a resource to ensure first.

The converger's known recovery for a missing prerequisite: read what the tool said was
missing (the failure's output tail, in the real tools' words) and install it. Only the cases
whose prerequisite lives on the same host and is plain from the text: a Linux service whose
unit no package brought (systemctl's `Unit X.service not found`: the package of that
name), an AD promotion without its feature, a user in a group that does not exist, a file
owned by an unknown user or group. Anything else
(directory objects with no DC, a resolver naming a host not discovered yet) is for the graph
or the LLM: None. Pure.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["prerequisite"]

_GROUP = re.compile(r"usermod: group '([^']+)' does not exist|Group (\S+) was not found")
_UNIT = re.compile(r"Unit (\S+?)\.service not found")
_CHOWN = re.compile(r"chown: invalid (user|group): '([^']+)'")


def prerequisite(kind: str, output_tail: str) -> dict[str, Any] | None:
    """The resource spec (lab form) a failed `kind` resource needs first, or None."""
    if kind == "service" and (m := _UNIT.search(output_tail)) is not None:
        return {"kind": "package", "name": m.group(1)}
    if kind == "ad_domain" and "Install-ADDSForest" in output_tail:
        return {"kind": "windows_feature", "name": "AD-Domain-Services"}
    if kind == "user" and (m := _GROUP.search(output_tail)) is not None:
        return {"kind": "group", "name": m.group(1) or m.group(2)}
    if kind in ("file", "directory") and (m := _CHOWN.search(output_tail)) is not None:
        return {"kind": m.group(1), "name": m.group(2)}
    return None
