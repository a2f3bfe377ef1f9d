"""Resources validated once per content (reaper.desired.memo) and what relies on it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reaper.actions import _ENSURE_PARAMS, CATALOG, validate_params
from reaper.desired.kinds import KINDS
from reaper.desired.memo import as_json, validated


def test_an_equal_mapping_gets_the_same_validated_resource() -> None:
    cls = KINDS["package"]
    a = validated(cls, {"kind": "package", "name": "curl"})
    b = validated(cls, {"kind": "package", "name": "curl"})
    assert a is b
    assert validated(cls, {"kind": "package", "name": "wget"}) is not a


def test_equal_but_differently_typed_data_is_validated_apart() -> None:
    cls = KINDS["user"]
    a = validated(cls, {"kind": "user", "name": "bench", "groups": ["x"]})
    b = validated(cls, {"kind": "user", "name": "bench", "groups": ("x",)})
    assert a == b  # the same resource either way, but not taken from the other's entry


def test_an_invalid_mapping_fails_every_time() -> None:
    cls = KINDS["file"]
    for _ in range(2):
        with pytest.raises(ValidationError):
            validated(cls, {"kind": "file", "path": "relative/path", "content": "x"})


def test_as_json_hands_out_fresh_copies() -> None:
    resource = validated(KINDS["user"], {"kind": "user", "name": "bench", "groups": ["g"]})
    first = as_json(resource)
    first["groups"].append("mutated")
    first["name"] = "other"
    assert as_json(resource) == resource.model_dump(mode="json")


@pytest.mark.parametrize("check_mode", [False, True])
def test_ensure_params_normalise_as_the_generic_dump_would(check_mode: bool) -> None:
    for model in _ENSURE_PARAMS.values():  # validate_params writes these two fields by hand
        assert set(model.model_fields) == {"resource", "check_mode"}
    spec = CATALOG["linux.ensure_file"]
    params = {"resource": {"kind": "file", "path": "/etc/motd", "content": "hi\n"}}
    if check_mode:
        params["check_mode"] = True
    out, error = validate_params(spec, params)
    assert error is None
    model = spec.params_model.model_validate(params)
    expected = model.model_dump(exclude_defaults=True)
    expected["resource"] = model.resource.model_dump(mode="json")  # type: ignore[attr-defined]
    assert out == expected
