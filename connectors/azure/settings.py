"""The keys of an ``azure`` source (docs/architecture.md, "Contracts"; documented in config/syncd.example.toml).

The authority is ``AUTHORITY_HOST/TENANT_ID`` and Graph calls go to ``GRAPH_URL/v1.0/...`` with a token for the
scope ``GRAPH_URL/.default``, so a national cloud (``https://login.microsoftonline.us`` with
``https://graph.microsoft.us``) or a test server needs only these two keys. Graph documents the page-size and
``$filter=id eq ...`` limits used here on "Use delta query to track changes in Microsoft Graph data".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from syncd.common.errors import ConfigError

#: Attributes every user read selects; ``select`` adds more (they land in ``UserRecord.attributes``). ``manager`` is
#: a relationship: selecting it makes Graph report ``manager@delta`` (delta query overview, "Optional query
#: parameters": ``$expand`` is not supported on user delta, ``$select`` of ``manager`` tracks it).
USER_ATTRIBUTES = (
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "givenName",
    "surname",
    "accountEnabled",
    "department",
    "jobTitle",
    "employeeId",
    "userType",
    "manager",
)
#: Attributes every group read selects; ``members`` makes Graph report ``members@delta`` (group: delta).
GROUP_ATTRIBUTES = ("id", "displayName", "description", "members")
#: Graph accepts at most 50 ids in a delta ``$filter`` (user: delta, "Query parameters").
MAX_FILTER_IDS = 50
#: Azure AD collections page at most 999 objects ("Paging Microsoft Graph data in your app").
MAX_PAGE_SIZE = 999

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Settings:
    """One Entra ID tenant, read with an application (client credentials) registration.

    Give exactly one credential: ``client_secret_file`` / ``client_secret_env``, or ``certificate_file`` (a PEM
    certificate, with its private key in the same file or in ``private_key_file``, or a ``.pfx``). The app needs
    the application permissions User.Read.All and, when groups are read, GroupMember.Read.All, with admin consent.
    """

    tenant_id: str
    client_id: str
    client_secret_file: str | None = None
    client_secret_env: str | None = None
    certificate_file: str | None = None
    private_key_file: str | None = None
    certificate_thumbprint: str | None = None
    certificate_password_file: str | None = None
    certificate_password_env: str | None = None
    ca_file: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    select: tuple[str, ...] = ()
    group_select: tuple[str, ...] = ()
    read_groups: bool = True
    group_ids: tuple[str, ...] = ()
    page_size: int = MAX_PAGE_SIZE
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_throttle_wait: float = 300.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not _TENANT.match(self.tenant_id):
            raise ConfigError(f"tenant_id: {self.tenant_id!r} is not a tenant id (a GUID or a verified domain name)")
        if not self.client_id.strip():
            raise ConfigError("client_id: required, the application (client) id of the app registration")
        credentials = [
            name
            for name in ("client_secret_file", "client_secret_env", "certificate_file")
            if getattr(self, name) is not None
        ]
        if len(credentials) != 1:
            raise ConfigError(
                "client_secret_file, client_secret_env or certificate_file: give exactly one credential"
                + (f" (got {', '.join(credentials)})" if credentials else "")
            )
        for name in (
            "private_key_file",
            "certificate_thumbprint",
            "certificate_password_file",
            "certificate_password_env",
        ):
            if getattr(self, name) is not None and self.certificate_file is None:
                raise ConfigError(f"{name}: only meaningful with certificate_file")
        for name in ("authority_host", "graph_url"):
            url = urlsplit(getattr(self, name))
            if url.scheme != "https" or not url.netloc or url.path.strip("/") or url.query:
                raise ConfigError(
                    f"{name}: expected an https origin like https://host[:port], got {getattr(self, name)!r}"
                )
        for name in ("select", "group_select"):
            for attribute in getattr(self, name):
                if not _ATTRIBUTE.match(attribute):
                    raise ConfigError(f"{name}: {attribute!r} is not a Graph property name")
        if len(self.group_ids) > MAX_FILTER_IDS:
            raise ConfigError(f"group_ids: Graph filters a delta query by at most {MAX_FILTER_IDS} ids")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size: expected 1 to {MAX_PAGE_SIZE}, got {self.page_size}")
        for name in ("connect_timeout", "read_timeout", "max_throttle_wait"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: expected a positive number of seconds")
        if self.max_retries < 0:
            raise ConfigError("max_retries: expected 0 or more")

    @property
    def authority(self) -> str:
        """``AUTHORITY_HOST/TENANT_ID``, the form msal requires (https, with a tenant path)."""
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @property
    def graph_origin(self) -> str:
        return self.graph_url.rstrip("/")

    @property
    def scope(self) -> str:
        """The client-credentials scope: every application permission granted on Graph."""
        return f"{self.graph_origin}/.default"

    def user_attributes(self) -> tuple[str, ...]:
        return USER_ATTRIBUTES + tuple(a for a in self.select if a not in USER_ATTRIBUTES)

    def group_attributes(self) -> tuple[str, ...]:
        return GROUP_ATTRIBUTES + tuple(a for a in self.group_select if a not in GROUP_ATTRIBUTES)
