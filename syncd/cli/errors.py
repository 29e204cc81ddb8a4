"""The errors the CLI turns into one line on stderr and exit 1: each already says what failed and the fix."""

from __future__ import annotations

from syncd.admin.audit import AuditError
from syncd.admin.history import HistoryError
from syncd.admin.members import MemberError
from syncd.admin.tokens import TokenError
from syncd.common.errors import ConfigError, ConnectorError
from syncd.service.admin_client import ServiceError
from syncd.store.db import StoreUnavailable
from syncd.sync.ledger import LedgerError
from syncd.sync.orgs import OrgError
from syncd.sync.pipeline import PipelineError


class CliError(Exception):
    """A command cannot do what was asked; the message names the fix."""


KNOWN_ERRORS: tuple[type[Exception], ...] = (
    AuditError,
    CliError,
    ConfigError,
    ConnectorError,
    HistoryError,
    LedgerError,
    MemberError,
    OrgError,
    PipelineError,
    ServiceError,
    StoreUnavailable,
    TokenError,
)
