"""The ``[[sources]]`` keys of a source of kind ``okta`` (docs/architecture.md, "Contracts").

Authentication is either an API token (``Authorization: SSWS …``, from ``token_file`` or ``token_env``) or an OAuth
2.0 service app (``client_id`` + ``private_key_file``, client credentials with a ``private_key_jwt`` assertion) —
exactly one of the two. Okta recommends the service app: its scopes are narrower than an admin's API token
(developer.okta.com, "Implement OAuth for Okta with a service app").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from syncd.common.errors import ConfigError

GROUP_TYPES = ("OKTA_GROUP", "APP_GROUP", "BUILT_IN")
USERS_PAGE_MAX = 200
"""``limit`` ceiling of ``GET /api/v1/users`` (Users API, "List all users")."""
GROUPS_PAGE_MAX = 10_000
"""``limit`` ceiling of ``GET /api/v1/groups``; Okta asks for 200 or less (Groups API, "List all groups")."""
MEMBERS_PAGE_MAX = 1000
"""``limit`` of ``GET /api/v1/groups/{id}/users``: 1000 is the documented default; we never ask for more."""
READ_SCOPES = ("okta.users.read", "okta.groups.read")
LOGS_SCOPE = "okta.logs.read"


@dataclass(frozen=True)
class Settings:
    """Connector settings; every key but ``url`` and the credentials has a default that suits a large org.

    - ``url``: the org URL (``https://acme.okta.com``, a preview or custom domain); plain ``http`` only to loopback.
    - ``token_file`` / ``token_env``: an API token (SSWS). ``client_id`` + ``private_key_file`` (+ ``key_id``,
      the ``kid`` of the registered key): an OAuth service app; ``scopes`` overrides the scopes asked for.
    - ``ca_file``: an extra CA bundle to trust (a TLS-inspecting proxy); certificate checks are never switched off.
    - ``connect_timeout`` / ``read_timeout``: seconds per request.
    - ``page_size`` (users, ≤ 200), ``group_page_size`` (≤ 10,000; Okta asks for ≤ 200), ``member_page_size``
      (≤ 1,000): the ``limit`` of the first page; a 5xx halves it for the retry.
    - ``group_types`` (``OKTA_GROUP``, ``APP_GROUP``, ``BUILT_IN``) and ``group_names`` (globs, case-insensitive):
      which groups are read; both empty means all.
    - ``rate_limit_share``: the share of each rate-limit bucket this source may fill (the rest stays free for the
      org's other integrations); ``max_concurrency``: requests in flight at once; ``max_wait``: the longest wait
      for a bucket's reset before the run gives up.
    - ``max_retries`` / ``retry_backoff``: attempts after a 5xx, a cut connection or a broken page, and the first
      backoff in seconds (doubling).
    - ``overlap_seconds``: how far before the last watermark an incremental read starts again.
    - ``system_log``: also poll the System Log for deletions and membership changes (needs ``okta.logs.read``).

    The periodic full snapshot that catches deletions is the common key ``full_snapshot_every``.
    """

    url: str
    token_file: str | None = None
    token_env: str | None = None
    client_id: str | None = None
    private_key_file: str | None = None
    key_id: str | None = None
    scopes: tuple[str, ...] = ()
    ca_file: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    page_size: int = USERS_PAGE_MAX
    group_page_size: int = 200
    member_page_size: int = MEMBERS_PAGE_MAX
    group_types: tuple[str, ...] = ()
    group_names: tuple[str, ...] = ()
    rate_limit_share: float = 0.5
    max_concurrency: int = 4
    max_retries: int = 4
    retry_backoff: float = 1.0
    max_wait: float = 120.0
    overlap_seconds: int = 300
    system_log: bool = False

    def __post_init__(self) -> None:
        _check_url(self.url)
        token = bool(self.token_file or self.token_env)
        oauth = bool(self.client_id or self.private_key_file)
        if token == oauth:
            raise ConfigError(
                "okta source: give either token_file/token_env (API token) or client_id + private_key_file "
                "(OAuth service app), not both and not neither"
            )
        if oauth and not (self.client_id and self.private_key_file):
            raise ConfigError("okta source: an OAuth service app needs both client_id and private_key_file")
        if self.token_file and self.token_env:
            raise ConfigError("okta source: give token_file or token_env, not both")
        _check_range("page_size", self.page_size, 1, USERS_PAGE_MAX)
        _check_range("group_page_size", self.group_page_size, 1, GROUPS_PAGE_MAX)
        _check_range("member_page_size", self.member_page_size, 1, MEMBERS_PAGE_MAX)
        _check_range("max_concurrency", self.max_concurrency, 1, 32)
        _check_range("max_retries", self.max_retries, 0, 10)
        _check_range("overlap_seconds", self.overlap_seconds, 0, 86_400)
        if not 0 < self.rate_limit_share <= 1:
            raise ConfigError(f"rate_limit_share: expected a fraction in (0, 1], got {self.rate_limit_share!r}")
        for name in ("connect_timeout", "read_timeout", "max_wait"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: expected a positive number of seconds, got {getattr(self, name)!r}")
        if self.retry_backoff < 0:
            raise ConfigError(f"retry_backoff: expected seconds >= 0, got {self.retry_backoff!r}")
        unknown = [t for t in self.group_types if t not in GROUP_TYPES]
        if unknown:
            raise ConfigError(f"group_types: {unknown[0]!r} is not an Okta group type ({', '.join(GROUP_TYPES)})")

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def oauth(self) -> bool:
        return bool(self.client_id)

    @property
    def requested_scopes(self) -> tuple[str, ...]:
        """The scopes asked of the token endpoint: the configured ones, else the read scopes this connector uses."""
        if self.scopes:
            return self.scopes
        return (*READ_SCOPES, LOGS_SCOPE) if self.system_log else READ_SCOPES


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}: expected {low}..{high}, got {value!r}")


def _check_url(url: str) -> None:
    """``https://`` always; plain ``http://`` only to a loopback address (a local fake or proxy, never the network)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"url: expected the org URL like https://acme.okta.com, got {url!r}")
    if parts.path.strip("/") or parts.query:
        raise ConfigError(f"url: give the org URL only (https://acme.okta.com), without a path; got {url!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError(f"url: {url!r} is plain http; Okta is reached over https (http only for a loopback address)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
