"""Resource kinds of Windows and Active Directory: features, a domain (promoting a domain
controller), joining one, and directory users and groups.

Every credential is a reference to an environment variable (`*_env`), read by the worker that
runs the action, never by the lab file, the engine or a prompt.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from reaper.desired.base import PasswordUpdate, ResourceBase, env_name, password_to_set

__all__ = ["AdDomain", "AdGroup", "AdUser", "DomainMembership", "WindowsFeature"]

Presence = Literal["present", "absent"]
_DOMAIN_RE = r"^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$"
_DOMAIN_SHAPE = "a DNS domain name like lab.local"
_DOMAIN = Field(pattern=_DOMAIN_RE, max_length=253, description=_DOMAIN_SHAPE)


class WindowsFeature(ResourceBase):
    kind: Literal["windows_feature"] = "windows_feature"
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="a feature name like Web-Server"
    )
    state: Presence = "present"
    include_management_tools: bool = True

    _unobserved: ClassVar[frozenset[str]] = frozenset({"include_management_tools"})


class AdDomain(ResourceBase):
    """A new forest with this host as its first domain controller."""

    kind: Literal["ad_domain"] = "ad_domain"
    name: str = _DOMAIN
    netbios: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,14}$",
        description="a NetBIOS name: up to 15 letters, digits or '-'",
    )
    safe_mode_password_env: str  # the Directory Services Restore Mode password
    functional_level: str | None = None  # e.g. WinThreshold; None: the OS default

    _check_env = field_validator("safe_mode_password_env")(lambda cls, v: env_name(v))


class DomainMembership(ResourceBase):
    """This host joined to `domain` (after the domain exists and this host resolves it)."""

    _name_field: ClassVar[str] = "domain"

    kind: Literal["domain_membership"] = "domain_membership"
    domain: str = _DOMAIN
    state: Presence = "present"
    credentials_env: str | None = None  # the join account's password
    user: str | None = None  # the join account (default: the domain's Administrator)
    ou: str | None = None

    _check_env = field_validator("credentials_env")(lambda cls, v: env_name(v))

    @model_validator(mode="after")
    def _credentials(self) -> DomainMembership:
        if self.state == "present" and self.credentials_env is None:
            raise ValueError("credentials_env: joining a domain needs the join password's env")
        return self


class _DirectoryObject(ResourceBase):
    name: str = Field(min_length=1, max_length=256)
    state: Presence = "present"
    # The domain it lives in; None: the domain its host declares (`ad_domain`).
    domain: str | None = Field(default=None, pattern=_DOMAIN_RE, description=_DOMAIN_SHAPE)
    ou: str | None = None


class AdUser(_DirectoryObject):
    kind: Literal["ad_user"] = "ad_user"
    groups: tuple[str, ...] = ()  # groups it must be a member of (others are left alone)
    enabled: bool = True
    password_env: str | None = None
    # When the password is set: at creation only, or on every run (then always a change).
    update_password: PasswordUpdate = "on_create"

    _unobserved: ClassVar[frozenset[str]] = frozenset({"update_password"})
    _check_env = field_validator("password_env")(lambda cls, v: env_name(v))
    _password = model_validator(mode="after")(password_to_set)


class AdGroup(_DirectoryObject):
    kind: Literal["ad_group"] = "ad_group"
    scope: Literal["global", "domain_local", "universal"] = "global"
    category: Literal["security", "distribution"] = "security"
