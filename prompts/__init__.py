"""Prompt templates shipped as package data, each versioned by the hash of its content.

Templates are plain files beside this module (``planner_system.md``, ``planner_user.md``) with
``string.Template`` placeholders (``$name``; ``$$`` for a literal dollar): no code runs while a
prompt is rendered. ``load_prompt(name).sha`` is the version recorded with every planner
decision, so an edited prompt is visible in the event log and changes the replay key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

__all__ = ["PLANNER_SYSTEM", "PLANNER_USER", "PLANNER_USER_DESIRED", "Prompt", "load_prompt"]

PLANNER_SYSTEM = "planner_system.md"
PLANNER_USER = "planner_user.md"
PLANNER_USER_DESIRED = "planner_user_desired.md"


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    text: str
    # sha256 of the file's UTF-8 bytes, first 12 hex digits: short enough to read in a log line.
    sha: str

    def render(self, **values: str) -> str:
        """Substitute every placeholder; a missing value is a KeyError, not a silent hole."""
        return Template(self.text).substitute(values)


@cache
def load_prompt(name: str) -> Prompt:
    """Read a template from the installed package (works from a wheel or a checkout)."""
    data = resources.files(__name__).joinpath(name).read_bytes()
    text = data.decode("utf-8")
    return Prompt(name=name, text=text, sha=hashlib.sha256(data).hexdigest()[:12])
