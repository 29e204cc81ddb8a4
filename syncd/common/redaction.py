"""The one place that masks secrets in text: every error, problem line and log line passes through :func:`redact`
before it is stored, printed, logged or sent (invariant 7: secrets never reach logs, the ledger, webhooks or error
messages; see docs/architecture.md).

Two kinds of secret are masked:

- every secret this process has read or obtained, registered with :func:`remember` where it enters: the secrets of
  ``*_file`` / ``*_env`` keys (Okta API token, Entra client secret, LDAP bind password, webhook signing secret), and
  the access tokens and client assertions obtained with them. A server or proxy that echoes the request (an error
  page showing the ``Authorization`` header, a body cut at some length) can return any part of one, so any run of
  :data:`MIN_FRAGMENT` or more characters of a known secret is masked too, not only the whole value;
- anything shaped like a credential whatever its value: a syncd bearer token (``syncd_…``), an HTTP ``Bearer``,
  ``Basic`` or Okta ``SSWS`` credential, a JWT, and ``password=``/``secret=``/``token=`` pairs.
"""

from __future__ import annotations

import re
import threading

REDACTED = "[redacted]"
MIN_FRAGMENT = 10
_SHAPES = re.compile(
    r"((?-i:syncd_)[A-Za-z0-9_-]{8,})"
    r"|((?:Bearer|Basic|SSWS)\s+[A-Za-z0-9._~+/=-]+)"
    r"|(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    r"|((?:password|passwd|secret|token|client_secret|client_assertion|access_token)"
    r"(?:=|[\"']\s*:\s*[\"']?)[^\s\"',&]+)",
    re.I,
)
_lock = threading.Lock()
_known: set[str] = set()
_fragments: set[str] = set()
_masks: tuple[tuple[str, ...], frozenset[str]] = ((), frozenset())
"""What :func:`redact` masks, longest secret first: rebuilt by :func:`remember` (rare), read whole by every call."""


def remember(secret: str | bytes | None) -> None:
    """Mask ``secret`` (and any long enough part of it) in every text from now on, in this process."""
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8", "replace")
    if not secret:
        return
    values = {secret, secret.strip()} | {line.strip() for line in secret.splitlines() if len(line.strip()) >= 4}
    global _masks
    with _lock:
        for value in values:
            if len(value) < 4:
                continue
            _known.add(value)
            _fragments.update(value[i : i + MIN_FRAGMENT] for i in range(len(value) - MIN_FRAGMENT + 1))
        _masks = (tuple(sorted(_known, key=len, reverse=True)), frozenset(_fragments))


def redact(text: str) -> str:
    """``text`` with every known secret, every fragment of one, and every credential-shaped value masked."""
    if not text:
        return text
    known, fragments = _masks
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    if fragments and len(text) >= MIN_FRAGMENT:
        text = _mask_fragments(text, fragments)
    return _SHAPES.sub(REDACTED, text)


def _mask_fragments(text: str, fragments: frozenset[str]) -> str:
    """Mask every run of text covered by windows of :data:`MIN_FRAGMENT` characters that occur in a known secret."""
    covered = [False] * len(text)
    for start in range(len(text) - MIN_FRAGMENT + 1):
        if text[start : start + MIN_FRAGMENT] in fragments:
            for index in range(start, start + MIN_FRAGMENT):
                covered[index] = True
    if not any(covered):
        return text
    out: list[str] = []
    index = 0
    while index < len(text):
        if covered[index]:
            while index < len(text) and covered[index]:
                index += 1
            out.append(REDACTED)
        else:
            out.append(text[index])
            index += 1
    return "".join(out)
