"""Errors of `roles:` name the place (`roles.web[2]`), the resource, the field and what is valid."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.desired import KINDS, parse_resource, parse_roles
from reaper.errors import ConfigError


def _error(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_roles(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_kind_lists_the_kinds_and_guesses():
    message = _error({"web": [{"kind": "package", "name": "a"}, {}, {"kind": "pakage"}]})
    assert message.startswith("roles.web[1]: `kind` is missing; valid kinds: package, service")
    message = _error({"web": [{"kind": "pakage", "name": "nginx"}]})
    assert message.startswith("roles.web[0]: unknown kind 'pakage' (did you mean 'package'?)")
    assert "valid kinds: " + ", ".join(KINDS) in message


def test_unknown_field_guesses_and_lists_the_fields():
    roles = {
        "web": [
            {"kind": "package", "name": "curl"},
            {"kind": "package", "name": "git"},
            {"kind": "package", "name": "nginx", "verison": "1.2"},
        ]
    }
    assert _error(roles) == (
        "roles.web[2] (package/nginx): unknown field 'verison' (did you mean 'version'?); "
        "fields of package: after, name, state, version"
    )


def test_invalid_value_names_the_field_and_the_valid_values():
    message = _error({"db": [{"kind": "service", "name": "postgresql", "state": "up"}]})
    assert message.startswith("roles.db[0] (service/postgresql): state: ")
    assert "'running' or 'stopped'" in message


def test_a_path_named_resource_is_labelled_by_its_path():
    message = _error({"web": [{"kind": "file", "path": "/etc/motd", "mode": "rw"}]})
    assert message.startswith("roles.web[0] (file//etc/motd): mode")


def test_missing_field_says_it_is_required():
    assert _error({"db": [{"kind": "package"}]}) == "roles.db[0]: name: required for package"


def test_a_resource_declared_twice_in_a_role_is_refused():
    message = _error({"web": [{"kind": "package", "name": "a"}, {"kind": "package", "name": "a"}]})
    assert message == "roles.web[1]: package/a is declared twice (also roles.web[0])"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([1], "roles: a mapping"),
        ({"web": {"kind": "package"}}, "roles.web: a role is a list"),
        ({"web": ["package/nginx"]}, "roles.web[0]: a resource is a mapping"),
        ({"bad role": []}, "is not a role name"),
    ],
)
def test_shape_errors(raw: Any, expected: str):
    assert expected in _error(raw)


def test_after_references_are_checked_for_shape_at_parse():
    with pytest.raises(ConfigError, match="not a reference"):
        parse_resource({"kind": "service", "name": "a", "after": ["nginx"]}, "roles.web[0]")


def test_no_roles_is_an_empty_mapping():
    assert parse_roles(None) == {}
