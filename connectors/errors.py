"""Errors a connector raises. Their text is for a person at 3 a.m.: source, what failed, what to check; no secret."""


class ConnectorError(Exception):
    """A read failed: the run stops, nothing is applied, and the message names the source and the fix."""


class ConfigError(ValueError):
    """A config value is unknown, missing or of the wrong type; the message starts with the key's dotted path."""
