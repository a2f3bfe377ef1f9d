"""File templates: sandboxed, strict about undefined facts, checked at load."""

from __future__ import annotations

import pytest

from reaper.desired.template import TemplateProblem, check_template, render_template


def test_renders_facts_and_keeps_the_last_newline():
    assert render_template("host {{ hostname }}\n", {"hostname": "web-01"}) == "host web-01\n"
    assert render_template("{{ os.family }}", {"os": {"family": "debian"}}) == "debian"


def test_an_undefined_fact_is_an_error_not_an_empty_string():
    with pytest.raises(TemplateProblem, match="'hostnme' is undefined"):
        render_template("{{ hostnme }}", {"hostname": "web-01"})


def test_the_sandbox_keeps_templates_away_from_python_internals():
    with pytest.raises(TemplateProblem):
        render_template("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
    with pytest.raises(TemplateProblem):
        render_template("{{ items.append(1) }}", {"items": []})  # immutable sandbox


def test_syntax_is_checked_without_facts():
    assert check_template("{{ a }}") == "{{ a }}"
    with pytest.raises(TemplateProblem, match=r"does not parse \(line 2\)"):
        check_template("ok\n{% for %}")
