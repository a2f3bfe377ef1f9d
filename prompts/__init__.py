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
from pathlib import Path
from string import Template

__all__ = [
    "PLANNER_SYSTEM",
    "PLANNER_SYSTEM_DESIRED",
    "PLANNER_USER",
    "PLANNER_USER_DESIRED",
    "PROMPT_FILES",
    "Prompt",
    "load_prompt",
    "variant_files",
]

PLANNER_SYSTEM = "planner_system.md"
# Desired-state missions: the goal, the rules and a catalog scoped to the lab (llm_catalog).
PLANNER_SYSTEM_DESIRED = "planner_system_desired.md"
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
def load_prompt(name: str, directory: str | None = None) -> Prompt:
    """Read a template: from `directory` when it holds one of that name (a prompt variant
    being tuned: `reaper eval --prompts DIR`; it may override only some files), else from
    the installed package (works from a wheel or a checkout)."""
    if directory is not None:
        candidate = Path(directory) / name
        if candidate.is_file():
            data = candidate.read_bytes()
            text = data.decode("utf-8")
            return Prompt(name=name, text=text, sha=hashlib.sha256(data).hexdigest()[:12])
    data = resources.files(__name__).joinpath(name).read_bytes()
    text = data.decode("utf-8")
    return Prompt(name=name, text=text, sha=hashlib.sha256(data).hexdigest()[:12])


PROMPT_FILES = (
    PLANNER_SYSTEM,
    PLANNER_SYSTEM_DESIRED,
    PLANNER_USER,
    PLANNER_USER_DESIRED,
    "planner_repair.md",
)


def variant_files(directory: str) -> list[str]:
    """The shipped prompt files a variant directory overrides; ValueError (one line) when it
    is not a directory or overrides none of them."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"--prompts {directory}: not a directory")
    found = [name for name in PROMPT_FILES if (root / name).is_file()]
    if not found:
        raise ValueError(
            f"--prompts {directory}: holds none of the prompt files ({', '.join(PROMPT_FILES)})"
        )
    return found
