"""Errors a connector raises. Their text is for a person at 3 a.m.: source, what failed, what to check; no secret."""

from __future__ import annotations

from typing import Any

from syncd.common.redaction import redact


class ConnectorError(Exception):
    """A read failed: the run stops, nothing is applied, and the message names the source and the fix.

    The message is redacted when the error is made (:func:`common.redaction.redact`): a server's error text
    quoted in it may echo the credential that was sent, and this text is stored, printed and logged.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigError(ValueError):
    """A config value is unknown, missing or of the wrong type; the message starts with the key's dotted path."""
