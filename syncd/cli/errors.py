"""The errors the CLI turns into one line on stderr and exit 1: each already says what failed and the fix."""

from __future__ import annotations

from connectors.interface import ConfigError, ConnectorError
from syncd.history import HistoryError
from syncd.ledger import LedgerError
from syncd.members import MemberError
from syncd.orgs import OrgError
from syncd.pipeline import PipelineError
from syncd.store.db import StoreUnavailable
from syncd.tokens import TokenError
from syncd.web_client import ServiceError


class CliError(Exception):
    """A command cannot do what was asked; the message names the fix."""


KNOWN_ERRORS: tuple[type[Exception], ...] = (
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
