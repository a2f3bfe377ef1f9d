"""File templates over host facts: Jinja2 in its sandbox, with StrictUndefined.

The sandbox because a lab file is data a user may have been handed, and a template must not
reach Python internals; StrictUndefined because a misspelt fact silently rendered as "" would
write a broken config to every host. Templates are parsed when the lab loads (syntax errors
surface there) and rendered when a host's facts are known (by the diff and the converger).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["TemplateProblem", "check_template", "render_template"]

# keep_trailing_newline: a config file's last newline is part of its content (and its sha256).
_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
)


class TemplateProblem(ValueError):
    """A template that does not parse, or does not render over the facts given."""


def check_template(text: str) -> str:
    """`text` if it parses as a template; TemplateProblem with the line otherwise."""
    try:
        _ENV.parse(text)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise TemplateProblem(
            f"template does not parse{f' (line {line})' if line else ''}: {exc}"
        ) from None
    return text


def render_template(text: str, facts: Mapping[str, Any]) -> str:
    """The template rendered with the host's facts as variables (`{{ hostname }}`)."""
    try:
        return _ENV.from_string(text).render(dict(facts))
    except TemplateError as exc:
        raise TemplateProblem(f"template does not render: {exc}") from None
