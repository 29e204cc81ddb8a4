"""The TOML config file: its shape (docs/architecture.md, "Contracts"), defaults and validation.

Every key but ``database.url`` has a default; an unknown key or a value of the wrong type is an error that names
the key's dotted path. Source settings beyond the common keys belong to the connector of that kind: each module
``connectors.<kind>`` declares a ``Settings`` dataclass, validated here by the same mechanism.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from syncd.common.errors import ConfigError
from syncd.common.settings import parse_settings
from syncd.logs import log_event

SOURCE_KINDS = ("file", "ldap", "okta", "azure")
ROLES = ("owner", "admin", "team_admin", "member", "guest")
DEFAULT_DATABASE_URL = "sqlite:///syncd.db"
SYSTEM_CONFIG = Path("/etc/syncd/syncd.toml")
SCIM_GUARD_WINDOW = (60, 7 * 86400)
"""Allowed range of ``policy.scim_guard_window`` in seconds (1m to 7d)."""
"""Read when neither ``--config`` nor ``SYNCD_CONFIG`` names a file: where the README's service install puts it."""

WEBHOOK_EVERY = (1, 3600)
"""Allowed range of ``server.webhook_every`` in seconds (1s to 1h): how long a committed event waits at most."""
WEBHOOK_MAX_BACKOFF = 6 * 3600
"""The longest wait between two attempts to deliver a webhook event (6h); ``server.webhook_first_backoff`` is at
most this."""

MAX_PROCESSES = 64
"""Upper bound of ``server.processes`` (HTTP processes of ``syncd serve``): a typo, not a machine, goes beyond it."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class ServerSettings:
    listen: str = "127.0.0.1:8080"
    metrics_listen: str = "127.0.0.1:9464"  # its own listener, so the SCIM listener never names tenants; "" = off
    metrics_token_file: str | None = None  # a bearer token the metrics listener then requires
    max_body_bytes: int = 1_048_576
    workers: int = 8  # HTTP threads in each process that serves HTTP (see syncd/service/serve.py)
    processes: int = 1  # processes serving HTTP; above 1 a supervisor keeps the scheduler (syncd/service/prefork.py)
    shutdown_timeout: int = 30
    public_url: str | None = None
    lease_seconds: int = 60
    quarantine_after: int = 3
    max_backoff: str = "6h"
    housekeeping_every: str = "15m"
    webhook_every: str = "10s"  # how often the outbox is read for due webhook events
    webhook_first_backoff: str = "30s"  # wait after a failed delivery, doubled per further failure up to 6h

    def quarantined(self, failures: int) -> bool:
        """Whether a source that failed ``failures`` runs in a row is quarantined (its schedule backs off): the one
        rule, asked by the scheduler, the admin API and /metrics."""
        return failures >= self.quarantine_after


@dataclass(frozen=True)
class LoggingSettings:
    format: Literal["logfmt", "json"] = "logfmt"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class Policy:
    grace_days: int = 30
    guard_max_percent: float = 10.0
    guard_max_count: int = 50
    transfer_to: str | None = None
    default_role: Literal["admin", "team_admin", "member", "guest"] = "member"
    scim_guard_window: str = "1h"

    def __post_init__(self) -> None:
        """Ranges a type cannot say: a percentage beyond 100 or a negative count would make the guard meaningless
        (a plan once read "over guard_max_count -5")."""
        if not 0 <= self.guard_max_percent <= 100:
            raise ConfigError(f"guard_max_percent: expected 0 to 100 (percent), got {self.guard_max_percent!r}")
        if self.guard_max_count < 0:
            raise ConfigError(f"guard_max_count: expected 0 or more (people), got {self.guard_max_count!r}")
        if self.grace_days < 0:
            raise ConfigError(f"grace_days: expected 0 or more (days), got {self.grace_days!r}")
        window = parse_interval(self.scim_guard_window, "scim_guard_window")
        if not SCIM_GUARD_WINDOW[0] <= window <= SCIM_GUARD_WINDOW[1]:
            raise ConfigError(f"scim_guard_window: expected 1m to 7d, got {self.scim_guard_window!r}")


@dataclass(frozen=True)
class Rule:
    """One mapping rule: a condition (group name, glob, id, or attribute values) and what it grants."""

    group: str | None = None
    group_glob: str | None = None
    group_id: str | None = None
    attribute: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    role: Literal["owner", "admin", "team_admin", "member", "guest"] | None = None
    team: str | None = None
    team_role: Literal["maintainer", "member"] = "member"
    parent: str | None = None


@dataclass(frozen=True)
class OrgSettings:
    slug: str
    name: str | None = None
    domains: tuple[str, ...] = ()
    match_on: Literal["email", "userName", "externalId"] = "email"
    policy: Policy = field(default_factory=Policy)
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class SourceSettings:
    """The keys every source has; ``connector`` holds the kind-specific settings object."""

    name: str
    org: str
    kind: str
    schedule: str = "15m"
    precedence: int = 0
    full_snapshot_every: str = "24h"
    enabled: bool = True
    connector: Any = None


@dataclass(frozen=True)
class WebhookSettings:
    """A ``[[webhooks]]`` endpoint: events (``fnmatch`` patterns) of the listed orgs (all when empty) are POSTed
    to ``url``, signed with the secret from ``secret_file`` or ``secret_env`` (see :mod:`syncd.service.webhooks`)."""

    url: str
    secret_file: str | None = None
    secret_env: str | None = None
    events: tuple[str, ...] = ("*",)
    orgs: tuple[str, ...] = ()
    timeout: float = 10.0
    ca_file: str | None = None


@dataclass(frozen=True)
class Config:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    orgs: tuple[OrgSettings, ...] = ()
    sources: tuple[SourceSettings, ...] = ()
    path: Path | None = None
    webhooks: tuple[WebhookSettings, ...] = ()

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"no source named {name!r} (known: {known})")


_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def is_slug(text: str) -> bool:
    """Whether ``text`` is an org slug: lowercase letters, digits and dashes, at most 63, not starting with a dash
    (config ``[[orgs]].slug`` and ``syncd orgs create`` alike)."""
    return _SLUG.match(text) is not None


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+{_LABEL}$")
_COMMON_SOURCE_KEYS = {"name", "org", "kind", "schedule", "precedence", "full_snapshot_every", "enabled"}


def locate(path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Which config file to read, and how it was chosen: ``--config``, else ``SYNCD_CONFIG``, else the system
    location (:data:`SYSTEM_CONFIG`) when it exists. Nothing else is guessed: with no config a command would work on
    an empty store it made in the current directory, so it is refused, naming both ways to pass one."""
    if path:
        return Path(path), "--config"
    if os.environ.get("SYNCD_CONFIG"):
        return Path(os.environ["SYNCD_CONFIG"]), "SYNCD_CONFIG"
    if SYSTEM_CONFIG.is_file():
        return SYSTEM_CONFIG, "the system location"
    raise ConfigError(
        f"no config: pass --config FILE or set SYNCD_CONFIG=FILE (or install one at {SYSTEM_CONFIG}); "
        "'syncd demo' writes one to try"
    )


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file chosen by :func:`locate`; ``--verbose`` logs which file that was."""
    file, how = locate(path)
    log_event(log, "config.file", logging.DEBUG, path=str(file), chosen_by=how)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"config {file}: cannot read it ({error.strerror}); pass --config FILE or set SYNCD_CONFIG"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {file}: not valid TOML ({error})") from None
    return parse(document, base=file.parent, path=file)


def parse(document: Mapping[str, Any], base: Path | None = None, path: Path | None = None) -> Config:
    """Validate a parsed TOML document into a :class:`Config`; relative file paths resolve against ``base``."""
    unknown = sorted(set(document) - {"database", "server", "logging", "orgs", "sources", "webhooks"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: database, server, logging, orgs, sources, webhooks)")
    database = parse_settings(DatabaseSettings, _table(document, "database"), "database")
    server = _parse_server(_table(document, "server"), base)
    parse_interval(server.max_backoff, "server.max_backoff")
    parse_interval(server.housekeeping_every, "server.housekeeping_every")
    logging = parse_settings(LoggingSettings, _table(document, "logging"), "logging")
    orgs = tuple(_parse_org(table, f"orgs[{i}]") for i, table in enumerate(_array(document, "orgs")))
    _unique([o.slug for o in orgs], "orgs", "slug")
    sources = tuple(_parse_source(table, f"sources[{i}]", base) for i, table in enumerate(_array(document, "sources")))
    _unique([s.name for s in sources], "sources", "name")
    webhooks = tuple(
        _parse_webhook(table, f"webhooks[{i}]", base) for i, table in enumerate(_array(document, "webhooks"))
    )
    return Config(
        database=database, server=server, logging=logging, orgs=orgs, sources=sources, path=path, webhooks=webhooks
    )


def _table(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table ([{key}])")
    return value


def _array(document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{key}: expected an array of tables ([[{key}]])")
    return value


def _unique(values: list[str], where: str, key: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{where}[{i}].{key}: {value!r} is declared twice")
        seen.add(value)


def _parse_org(table: Mapping[str, Any], where: str) -> OrgSettings:
    plain = {k: v for k, v in table.items() if k not in ("policy", "rules")}
    org = parse_settings(OrgSettings, plain, where)
    if not is_slug(org.slug):
        raise ConfigError(f"{where}.slug: {org.slug!r} is not a slug (lowercase letters, digits and dashes)")
    policy_table = table.get("policy", {})
    if not isinstance(policy_table, dict):
        raise ConfigError(f"{where}.policy: expected a table")
    policy = parse_settings(Policy, policy_table, f"{where}.policy")
    rules_tables = table.get("rules", [])
    if not isinstance(rules_tables, list):
        raise ConfigError(f"{where}.rules: expected an array of tables")
    rules = tuple(_parse_rule(rule, f"{where}.rules[{i}]") for i, rule in enumerate(rules_tables))
    for i, domain in enumerate(org.domains):
        check_domain(domain, f"{where}.domains[{i}]")
    return OrgSettings(
        slug=org.slug,
        name=org.name or org.slug,
        domains=tuple(d.lower() for d in org.domains),
        match_on=org.match_on,
        policy=policy,
        rules=rules,
    )


def _parse_rule(table: Any, where: str) -> Rule:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    rule = parse_settings(Rule, table, where)
    conditions = [k for k in ("group", "group_glob", "group_id") if getattr(rule, k)] + (
        ["attribute"] if rule.attribute else []
    )
    if len(conditions) != 1:
        raise ConfigError(f"{where}: give exactly one of group, group_glob, group_id, attribute")
    if rule.role is None and rule.team is None:
        raise ConfigError(f"{where}: a rule grants a role, a team, or both; give role or team")
    return rule


def _parse_source(table: Mapping[str, Any], where: str, base: Path | None) -> SourceSettings:
    common = parse_settings(SourceSettings, {k: v for k, v in table.items() if k in _COMMON_SOURCE_KEYS}, where)
    if common.kind not in SOURCE_KINDS:
        raise ConfigError(f"{where}.kind: expected one of {', '.join(SOURCE_KINDS)}, got {common.kind!r}")
    module = importlib.import_module(f"connectors.{common.kind}")
    specific = {k: v for k, v in table.items() if k not in _COMMON_SOURCE_KEYS}
    for key, value in list(specific.items()):
        if base is not None and isinstance(value, str) and (key == "path" or key.endswith("_file")):
            specific[key] = str((base / value).resolve()) if not Path(value).is_absolute() else value
    settings = parse_settings(module.Settings, specific, where, also_known=_COMMON_SOURCE_KEYS)
    parse_interval(common.full_snapshot_every, f"{where}.full_snapshot_every")
    check_schedule(common.schedule, f"{where}.schedule")
    return SourceSettings(**{**common.__dict__, "connector": settings})


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _parse_server(table: Mapping[str, Any], base: Path | None) -> ServerSettings:
    """``[server]``; a relative ``metrics_token_file`` is relative to the config file, like every ``*_file`` key."""
    values = dict(table)
    token = values.get("metrics_token_file")
    if base is not None and isinstance(token, str) and not Path(token).is_absolute():
        values["metrics_token_file"] = str((base / token).resolve())
    settings = parse_settings(ServerSettings, values, "server")
    if not 1 <= settings.processes <= MAX_PROCESSES:
        raise ConfigError(f"server.processes: expected 1 to {MAX_PROCESSES}, got {settings.processes}")
    if not WEBHOOK_EVERY[0] <= parse_interval(settings.webhook_every, "server.webhook_every") <= WEBHOOK_EVERY[1]:
        raise ConfigError(
            f"server.webhook_every: expected 1s to 1h (how often due webhook events are sent), "
            f"got {settings.webhook_every!r}"
        )
    if parse_interval(settings.webhook_first_backoff, "server.webhook_first_backoff") > WEBHOOK_MAX_BACKOFF:
        raise ConfigError(
            f"server.webhook_first_backoff: expected 1s to 6h (the wait after a failed webhook delivery, doubled "
            f"per further failure up to 6h), got {settings.webhook_first_backoff!r}"
        )
    return settings


def _parse_webhook(table: Mapping[str, Any], where: str, base: Path | None) -> WebhookSettings:
    """A webhook needs https (plain http only to this machine) and exactly one secret source, never inline."""
    values = dict(table)
    for key in ("secret_file", "ca_file"):
        if base is not None and isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
            values[key] = str((base / values[key]).resolve())
    hook = parse_settings(WebhookSettings, values, where)
    parts = urlsplit(hook.url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        raise ConfigError(f"{where}.url: use an https:// URL (plain http is allowed only to 127.0.0.1/localhost)")
    if (hook.secret_file is None) == (hook.secret_env is None):
        raise ConfigError(f"{where}: give exactly one of secret_file or secret_env (the signing secret)")
    if hook.timeout <= 0:
        raise ConfigError(f"{where}.timeout: expected a positive number of seconds, got {hook.timeout!r}")
    return hook


_INTERVAL = re.compile(r"^(\d+)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str, where: str) -> int:
    """``"15m"`` → 900 seconds; the error names the key and the accepted forms."""
    match = _INTERVAL.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{where}: expected an interval like 30s, 15m, 6h or 1d, got {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def check_schedule(text: str, where: str) -> None:
    """A schedule is an interval (``15m``) or a five-field cron expression (``*/15 * * * *``)."""
    if _INTERVAL.match(text.strip()):
        parse_interval(text, where)
        return
    if len(text.split()) != 5:
        raise ConfigError(
            f"{where}: expected an interval like 15m or a cron expression like '*/15 * * * *', got {text!r}"
        )
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text)
    except ValueError as error:
        raise ConfigError(f"{where}: invalid cron expression {text!r} ({error})") from None


def check_domain(text: str, where: str) -> None:
    """An email domain as in RFC 1035 §2.3.1 (dot-separated labels of letters, digits and inner hyphens; at least
    two labels; 253 characters at most), compared case-insensitively; internationalized names in their xn-- form."""
    if len(text) > 253 or not _DOMAIN.match(text.lower()):
        raise ConfigError(f"{where}: {text!r} is not a domain name; expected a form like example.com")
