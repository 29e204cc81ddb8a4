"""The settings of an LDAP source: the keys of a ``[[sources]]`` table of kind ``ldap`` (docs/architecture.md,
"Contracts"), documented one by one in config/syncd.example.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from connectors.interface import DESCRIPTIVE_FIELDS
from syncd.common.errors import ConfigError

#: Record fields an ``attributes`` table may map to another LDAP attribute (SCIM core and enterprise User, RFC 7643
#: §4.1 and §4.3, plus the group's display name).
MAPPABLE_FIELDS = ("user_name", "email", *DESCRIPTIVE_FIELDS, "manager", "group_name")

Scope = Literal["sub", "one", "base"]


@dataclass(frozen=True)
class Settings:
    """How to reach and read one LDAP directory.

    ``url`` is one URL or a list tried in order (failover). Certificates are always verified: ``ca_file`` adds a CA
    bundle to the system's trusted ones, it never switches checks off. Filters default to the flavour's (see ``connectors/ldap/vendor``).
    """

    url: str | tuple[str, ...]
    users_base: str
    groups_base: str | None = None
    bind_dn: str | None = None
    bind_password_file: str | None = None
    bind_password_env: str | None = None
    users_filter: str | None = None
    groups_filter: str | None = None
    users_scope: Scope = "sub"
    groups_scope: Scope = "sub"
    disabled_filter: str | None = None
    flavor: Literal["auto", "openldap", "ad", "freeipa", "389ds"] = "auto"
    page_size: int = 1000
    ca_file: str | None = None
    start_tls: bool = False
    connect_timeout: float = 10.0
    timeout: float = 60.0
    time_limit: int = 0
    incremental: Literal["auto", "syncrepl", "usn", "dirsync", "changelog", "timestamp", "off"] = "auto"
    leaver_check_every: int = 1
    attributes: dict[str, str] = field(default_factory=dict)
    extra_attributes: tuple[str, ...] = ()
    member_of: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.attributes) - set(MAPPABLE_FIELDS))
        if unknown:
            raise ConfigError(f"attributes.{unknown[0]}: not a mappable field (known: {', '.join(MAPPABLE_FIELDS)})")
        for name, value in self.attributes.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(f"attributes.{name}: expected an LDAP attribute name, got {value!r}")
        if not self.urls:
            raise ConfigError("url: give at least one ldap:// or ldaps:// URL")
        for url in self.urls:
            if not url.lower().startswith(("ldap://", "ldaps://")):
                raise ConfigError(f"url: {url!r} is not an ldap:// or ldaps:// URL")
        if self.start_tls and any(url.lower().startswith("ldaps://") for url in self.urls):
            raise ConfigError("start_tls: an ldaps:// URL is already TLS; use ldap:// URLs with start_tls = true")
        if not 1 <= self.page_size <= 100_000:
            raise ConfigError(f"page_size: expected 1 to 100000, got {self.page_size}")
        if not 1 <= self.leaver_check_every <= 1000:
            raise ConfigError(f"leaver_check_every: expected 1 to 1000 increments, got {self.leaver_check_every}")
        if self.connect_timeout <= 0 or self.timeout <= 0:
            raise ConfigError("connect_timeout and timeout: expected a positive number of seconds")
        if self.bind_dn and not (self.bind_password_file or self.bind_password_env):
            raise ConfigError(
                "bind_dn: give bind_password_file or bind_password_env with it (never an inline password)"
            )

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url,) if isinstance(self.url, str) else tuple(self.url)

    @property
    def group_base(self) -> str:
        return self.groups_base or self.users_base
