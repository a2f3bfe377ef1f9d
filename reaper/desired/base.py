"""What every resource kind shares: strict frozen models, an identity, `after`, and the refusal
of inline secrets.

A kind subclasses `ResourceBase`, sets `kind` to a Literal of its name and says which field
names it (`_name_field`). `properties()` is what the diff compares: every declared value except
the identity, the wiring (`after`, `notify`) and secret references, which no discover can read
back. `None` (and an empty list) means "not managed": the diff leaves the observed value alone.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from reaper.desired.identity import ResourceId, parse_ref

__all__ = [
    "ABSOLUTE_PATH",
    "SECRET_FIELD",
    "PasswordUpdate",
    "ResourceBase",
    "env_name",
    "octal_mode",
    "password_to_set",
]

# Field names that would carry a secret's value; their `*_env` twin carries its reference.
SECRET_FIELD = re.compile(
    r"(^|_)(password|passwd|passphrase|secret|token|credentials?|private_key|api_key)$"
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ABSOLUTE_PATH = re.compile(r"(/.*|[A-Za-z]:[\\/].*|\\\\.+)")


# Field names that end like a secret but hold none: when a password is set (Ansible's name).
_NOT_SECRETS = frozenset({"update_password"})
PasswordUpdate = Literal["on_create", "always"]


@lru_cache(maxsize=1024)
def _names_a_secret(key: str) -> bool:
    # Every resource validation asks this of each field name: a handful of names, each
    # searched once.
    return key not in _NOT_SECRETS and SECRET_FIELD.search(key) is not None


def password_to_set(account: Any) -> Any:
    """An account's `update_password` checked against its `password_env` (a model validator,
    `mode="after"`). `always` sets the password on every run, reported as a change: a
    password cannot be read back to be compared, so Reaper cannot tell whether it already is
    the declared one."""
    if account.update_password == "always" and account.password_env is None:
        raise ValueError("update_password: always needs password_env (the password to set)")
    return account


_WIRING = frozenset({"kind", "after", "notify"})


def env_name(value: str | None) -> str | None:
    """An environment variable's name (a secret's reference), checked for shape only."""
    if value is not None and not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def octal_mode(value: Any) -> str | None:
    """'644', '0644' and '0o644' → '0644'. An unquoted YAML 0644 arrives as the int 420 and a
    bare 644 as six hundred and forty-four, so ints are refused rather than guessed."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"quote the mode as a string of octal digits, e.g. '0644' (got {value})")
    if not isinstance(value, str):
        raise ValueError("mode must be a string of octal digits, e.g. '0644'")
    digits = value.strip().removeprefix("0o")
    if not re.fullmatch(r"[0-7]{3,4}", digits):
        raise ValueError(f"mode {value!r} is not octal digits like '0644'")
    return digits.zfill(4)


class ResourceBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    # References to resources this one runs after: `HOST:KIND/NAME`, or `KIND/NAME` on the
    # same host (resolved by `reaper.desired.graph`).
    after: tuple[str, ...] = ()

    _name_field: ClassVar[str] = "name"
    # Fields the diff never compares (secret references, install-time options).
    _unobserved: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        # Checked before any other field so the message says what to do, not "unknown field".
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and _names_a_secret(key):
                    raise ValueError(
                        f"{key}: secrets are never written inline; put it in an environment "
                        f"variable and name it with `{key}_env`"
                    )
        return data

    @field_validator("after")
    @classmethod
    def _refs_well_formed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_ref(text, host="-")  # shape only: hosts are checked by the graph
        return value

    @property
    def rid(self) -> ResourceId:
        """`KIND/NAME`; kinds without a naming field (firewall) override it."""
        return ResourceId(self.kind, str(getattr(self, self._name_field)))

    def os_problem(self, os: str) -> str | None:
        """Why this resource cannot be declared on `os` beyond the kind table (None: fine)."""
        return None

    def properties(self) -> dict[str, Any]:
        skip = _WIRING | self._unobserved | {self._name_field}
        return {
            key: value
            for key, value in self.__dict__.items()
            if key not in skip and value not in (None, ()) and not key.endswith("_env")
        }
