"""The declared resources a discover can read on a host, and why the others cannot be read.

Shared by the Linux, macOS and Windows discovers: a resource whose values the OS's tools would
take as an option or a path (its `argument_problem`) is reported, not read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from reaper.desired.base import ResourceBase
from reaper.desired.parse import declared_resources

__all__ = ["observe_argv", "readable_resources"]


def readable_resources(
    items: list[dict[str, Any]], problem_of: Callable[[ResourceBase], str | None]
) -> tuple[list[ResourceBase], dict[str, str]]:
    """The declared resources discover can read, and the problems of the others (by index)."""
    resources, problems = declared_resources(items)
    out: list[ResourceBase] = []
    for index, resource in resources:
        why = problem_of(resource)
        if why is None:
            out.append(resource)
        else:
            problems[index] = f"{resource.rid}: {why}"
    return out, problems


def observe_argv(
    script: str,
    resources: Iterable[ResourceBase],
    args_of: Callable[[ResourceBase], tuple[str, str]],
) -> list[str]:
    """`sh -c SCRIPT sh KIND NAME...`: the one command that reads every resource (the values
    travel as arguments)."""
    argv = ["sh", "-c", script, "sh"]
    for resource in resources:
        argv += args_of(resource)
    return argv
