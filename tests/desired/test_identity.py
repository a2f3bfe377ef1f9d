"""Identities `KIND/NAME` and references `HOST:KIND/NAME`."""

from __future__ import annotations

import pytest

from reaper.desired import Ref, ResourceId, parse_ref


def test_identity_splits_at_the_first_slash_so_paths_keep_theirs():
    assert str(ResourceId("file", "/etc/motd")) == "file//etc/motd"
    assert parse_ref("web-01:file//etc/motd") == Ref("web-01", "file", "/etc/motd")
    assert parse_ref("setting/com.apple.screensaver/askForPassword", host="mac-01") == Ref(
        "mac-01", "setting", "com.apple.screensaver/askForPassword"
    )


def test_a_colon_after_the_slash_belongs_to_the_name():
    assert parse_ref("file/C:\\motd.txt", host="w") == Ref("w", "file", "C:\\motd.txt")
    assert parse_ref("dc-01:file/C:\\motd.txt").host == "dc-01"


def test_reference_round_trips_and_knows_its_identity():
    ref = parse_ref("db-01:service/postgresql")
    assert str(ref) == "db-01:service/postgresql"
    assert ref.rid == ResourceId("service", "postgresql")
    assert ref.rid.on("db-01") == ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "not a reference"),
        ("service/", "not a reference"),
        ("service/nginx", "names no host"),
        ("web:Service/nginx", "not a resource kind"),
        ("web 01:service/nginx", "not a host id"),
    ],
)
def test_malformed_references_say_what_is_wrong(text: str, expected: str):
    with pytest.raises(ValueError, match=expected):
        parse_ref(text)
