"""Resource kinds of one machine: packages, services, files, accounts, settings, sshd, the
firewall, DNS client settings and package repositories.

Identities (`KIND/NAME`, see `reaper.desired.identity`): a file or directory is named by its
path (`file//etc/motd`); a firewall rule by `name:` when given, else by what it matches
(`firewall/allow-tcp-5432-from-192.0.2.0/24`); a dns_client by its interface (`default`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from reaper.desired.base import (
    ABSOLUTE_PATH,
    PasswordUpdate,
    ResourceBase,
    env_name,
    octal_mode,
    password_to_set,
)
from reaper.desired.identity import ResourceId, parse_ref
from reaper.desired.template import check_template

__all__ = [
    "Directory",
    "DnsClient",
    "File",
    "Firewall",
    "Group",
    "Package",
    "PackageRepository",
    "Service",
    "Setting",
    "SshdOption",
    "User",
]

Presence = Literal["present", "absent"]
_NAME = Field(min_length=1, max_length=256)


def _scalar_text(value: Any) -> Any:
    # YAML reads `value: 0` as an int and `yes` as a bool; settings compare as text.
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return value


class Package(ResourceBase):
    kind: Literal["package"] = "package"
    name: str = _NAME
    state: Presence = "present"
    # A prefix of the installed version at a component boundary: "1.24" matches 1.24.0-1.
    version: str | None = None

    @model_validator(mode="after")
    def _version_needs_presence(self) -> Package:
        if self.version is not None and self.state == "absent":
            raise ValueError("version: a package that must be absent has no version")
        return self


class Service(ResourceBase):
    kind: Literal["service"] = "service"
    name: str = _NAME
    state: Literal["running", "stopped"] = "running"
    enabled: bool | None = None  # started at boot; None leaves it as it is


class _PathResource(ResourceBase):
    _name_field: ClassVar[str] = "path"

    path: str = Field(min_length=1, max_length=4096)
    state: Presence = "present"
    mode: str | None = None
    owner: str | None = None
    group: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not ABSOLUTE_PATH.fullmatch(value):
            raise ValueError(f"path {value!r} must be absolute (/etc/motd or C:\\motd.txt)")
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> str | None:
        return octal_mode(value)

    def os_problem(self, os: str) -> str | None:
        windows_path = not self.path.startswith("/")
        if os == "windows" and not windows_path:
            return f"path {self.path!r} is not a Windows path (C:\\...)"
        if os != "windows" and windows_path:
            return f"path {self.path!r} is a Windows path on a {os} host"
        if os == "windows" and self.mode is not None:
            return "mode: Windows files have ACLs, not modes"
        return None


class File(_PathResource):
    kind: Literal["file"] = "file"
    content: str | None = None
    # Jinja2 over the host's facts (`reaper.desired.template`), rendered per host.
    template: str | None = None
    # Services restarted when this file changes (`nginx`, `service/nginx` or a HOST: ref);
    # the file also runs before them.
    notify: tuple[str, ...] = ()

    @field_validator("template")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @field_validator("notify", mode="before")
    @classmethod
    def _service_refs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return tuple(v if isinstance(v, str) and "/" in v else f"service/{v}" for v in value)
        return value

    @field_validator("notify")
    @classmethod
    def _notify_services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            if parse_ref(text, host="-").kind != "service":
                raise ValueError(f"notify: {text!r} is not a service (notify restarts services)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> File:
        if self.content is not None and self.template is not None:
            raise ValueError("content and template: give one, not both")
        if self.state == "absent" and (self.content is not None or self.template is not None):
            raise ValueError("state: an absent file has no content or template")
        return self


class Directory(_PathResource):
    kind: Literal["directory"] = "directory"


class User(ResourceBase):
    kind: Literal["user"] = "user"
    name: str = _NAME
    state: Presence = "present"
    uid: int | None = Field(default=None, ge=0)
    # Supplementary groups the user must be in (others it is in are left alone).
    groups: tuple[str, ...] = ()
    shell: str | None = None
    home: str | None = None
    enabled: bool | None = None  # False: the account is locked / disabled
    password_env: str | None = None
    # When the password is set: at creation only, or on every run (then always a change).
    update_password: PasswordUpdate = "on_create"

    _unobserved: ClassVar[frozenset[str]] = frozenset({"update_password"})
    _check_env = field_validator("password_env")(lambda cls, v: env_name(v))
    _password = model_validator(mode="after")(password_to_set)

    def os_problem(self, os: str) -> str | None:
        posix_only = [f for f in ("uid", "shell", "home") if getattr(self, f) is not None]
        if os == "windows" and posix_only:
            return f"{', '.join(posix_only)}: POSIX account fields, not set on Windows"
        if os == "macos" and self.update_password == "always":
            return "update_password: always: macOS account passwords are not set by Reaper yet"
        return None


class Group(ResourceBase):
    kind: Literal["group"] = "group"
    name: str = _NAME
    state: Presence = "present"
    gid: int | None = Field(default=None, ge=0)

    def os_problem(self, os: str) -> str | None:
        if os == "windows" and self.gid is not None:
            return "gid: a POSIX group field, not set on Windows"
        return None


_SYSCTL_KEY = re.compile(r"[a-z0-9_-]+(\.[A-Za-z0-9_*-]+)+")
_REGISTRY = re.compile(
    r"(HKLM|HKCU|HKCR|HKU|HKCC|HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|"
    r"HKEY_USERS|HKEY_CURRENT_CONFIG):?\\.+\\[^\\]+"
)
# A defaults domain (a name, or a plist path) and the key after the last slash.
_DEFAULTS = re.compile(r"/?[^/\s]+(/[^/\s]+)*/[^/\s]+")
_SETTING_TYPES: dict[str, frozenset[str]] = {
    "linux": frozenset(),
    "windows": frozenset({"string", "expand_string", "multi_string", "dword", "qword"}),
    "macos": frozenset({"string", "int", "float", "bool"}),
}


class Setting(ResourceBase):
    """A system setting, read by OS: a sysctl key on Linux (`net.ipv4.ip_forward`), a registry
    value on Windows (`HKLM\\SOFTWARE\\...\\ValueName`), a `defaults` key on macOS
    (`com.apple.screensaver/askForPassword`: the domain, or a plist path like
    `/Library/Preferences/com.apple.alf`, then the key after the last slash)."""

    kind: Literal["setting"] = "setting"
    name: str = _NAME
    value: str
    type: str | None = None  # registry or defaults value type; sysctl values are text

    _text = field_validator("value", mode="before")(lambda cls, v: _scalar_text(v))

    def os_problem(self, os: str) -> str | None:
        shapes = {
            "linux": (_SYSCTL_KEY, "a sysctl key like net.ipv4.ip_forward"),
            "windows": (_REGISTRY, "a registry value like HKLM\\SOFTWARE\\Vendor\\Name"),
            "macos": (_DEFAULTS, "a defaults domain/key like com.apple.screensaver/askForPassword"),
        }
        shape, example = shapes[os]
        if not shape.fullmatch(self.name):
            return f"name {self.name!r}: on {os} a setting is {example}"
        types = _SETTING_TYPES[os]
        if self.type is not None and self.type not in types:
            valid = ", ".join(sorted(types)) or "none (sysctl values are text)"
            return f"type {self.type!r} is not a {os} setting type (valid: {valid})"
        return None


class SshdOption(ResourceBase):
    kind: Literal["sshd_option"] = "sshd_option"
    name: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9]*$", description="an sshd_config keyword like PermitRootLogin"
    )
    value: str

    _text = field_validator("value", mode="before")(lambda cls, v: _scalar_text(v))


def _cidr(value: str | None) -> str | None:
    if value is not None and value != "any":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an address or CIDR network") from None
    return value


class Firewall(ResourceBase):
    """One inbound rule. Without `port` it matches every port: a default policy such as the
    baseline's `action: drop` runs after the rules it must not shadow."""

    kind: Literal["firewall"] = "firewall"
    name: str | None = Field(default=None, min_length=1, max_length=128)
    port: int | str | None = None  # 22, or a range "8000-8100"
    proto: Literal["tcp", "udp", "icmp", "any"] = "tcp"
    source: str | None = None  # an address or CIDR; None: anywhere
    action: Literal["allow", "deny", "drop"] = "allow"
    state: Presence = "present"

    _source = field_validator("source")(lambda cls, v: _cidr(v))

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str):
            m = re.fullmatch(r"(\d+)-(\d+)", value)
            if m is None or not 0 < int(m.group(1)) <= int(m.group(2)) <= 65535:
                raise ValueError(f"port {value!r}: a number or a range like 8000-8100")
        elif isinstance(value, int) and not 0 < value <= 65535:
            raise ValueError(f"port {value}: must be 1-65535")
        return value

    @property
    def rid(self) -> ResourceId:
        if self.name is not None:
            return ResourceId(self.kind, self.name)
        name = f"{self.action}-{self.proto}-{self.port if self.port is not None else 'any'}"
        return ResourceId(self.kind, name + (f"-from-{self.source}" if self.source else ""))

    def properties(self) -> dict[str, Any]:
        return {k: v for k, v in super().properties().items() if k != "name"}


class DnsClient(ResourceBase):
    """The resolvers a host uses: fixed addresses, or the addresses of lab hosts (a domain
    member points at its domain controllers), resolved when the host's address is known."""

    kind: Literal["dns_client"] = "dns_client"
    name: str = Field(default="default", min_length=1, max_length=128)  # interface; all
    servers: tuple[str, ...] = ()
    servers_from: tuple[str, ...] = ()
    search: tuple[str, ...] = ()

    @field_validator("servers")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ValueError(f"servers: {server!r} is not an IP address") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DnsClient:
        if bool(self.servers) == bool(self.servers_from):
            raise ValueError("servers or servers_from: give exactly one of them")
        return self


_URL = r"^(https?|file)://\S+$"
_URL_SHAPE = "an http://, https:// or file:// URL"


class PackageRepository(ResourceBase):
    """An apt source (signed by its key) or a dnf/yum repository."""

    kind: Literal["package_repository"] = "package_repository"
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="letters, digits, '.', '_' or '-'"
    )
    format: Literal["apt", "dnf"]
    url: str = Field(pattern=_URL, description=_URL_SHAPE)
    suite: str | None = None  # apt: the distribution (bookworm)
    components: tuple[str, ...] = ("main",)  # apt
    key_url: str | None = Field(default=None, pattern=_URL, description=_URL_SHAPE)
    gpgcheck: bool = True  # dnf
    enabled: bool = True
    state: Presence = "present"

    @model_validator(mode="after")
    def _shape(self) -> PackageRepository:
        if self.state == "absent":
            return self
        if self.format == "apt" and self.suite is None:
            raise ValueError("suite: an apt source needs its suite (e.g. bookworm)")
        if self.key_url is None and (self.format == "apt" or self.gpgcheck):
            raise ValueError("key_url: a repository needs its signing key (or gpgcheck: false)")
        return self
