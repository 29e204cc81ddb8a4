"""Bearer tokens: org-scoped, stored only as SHA-256 hashes, compared in constant time, revocable, expiring.

A token is ``syncd_`` followed by 256 random bits (URL-safe base64). With that much entropy a plain SHA-256 is the
right hash (a slow password hash buys nothing), and lookup by hash needs no scan.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from syncd.clock import iso, utcnow
from syncd.store import sql
from syncd.store.db import database
from syncd.store.dialect import Dialect, stored_time
from syncd.store.migrations import TOKEN_EPOCH
from syncd.store.models import Organization, Token
from syncd.store.tx import write_transaction
from syncd.sync import ledger

SCOPES = ("scim", "admin", "read")
PREFIX = "syncd_"


class TokenError(Exception):
    """A token operation was refused; the message says why."""


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (RFC 6750 §2.1: the scheme is case-insensitive), else
    None. The one parser of the header for SCIM, the admin API and the metrics listener."""
    scheme, _, presented = (authorization or "").partition(" ")
    return presented.strip() or None if scheme.lower() == "bearer" else None


def bearer_matches(authorization: str | None, expected: str) -> bool:
    """Whether the header carries exactly ``expected``, compared in constant time."""
    presented = bearer(authorization)
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: one org, one scope, one token id (the ledger's actor is ``token:<id>``)."""

    org_id: int
    org_slug: str
    scope: str
    token_id: int

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"


def create(
    org: Organization, scope: str, expires_in: timedelta | None = None, description: str = "", actor: str = "admin:cli"
) -> tuple[Token, str]:
    """Create a token; return the row and the token text, which is never stored or shown again."""
    if scope not in SCOPES:
        raise TokenError(f"scope {scope!r} is unknown; use one of {', '.join(SCOPES)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with write_transaction():
        row = Token.create(
            org=org,
            scope=scope,
            token_hash=digest(secret),
            prefix=secret[: len(PREFIX) + 4],
            description=description,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        ledger.append(
            org.id,
            actor=actor,
            action="token.create",
            target=f"token:{row.id}",
            after={"scope": scope, "expires_at": iso(row.expires_at) if row.expires_at else None},
            reason=description or "created",
        )
    return row, secret


def listing(org: Organization | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every token (or one org's), oldest first, as ``syncd tokens list --format json`` prints it: never the secret
    or its hash, only the first characters of the token and whether it is active, expired or revoked."""
    query = Token.select(Token, Organization).join(Organization).order_by(Token.id)
    if org is not None:
        query = query.where(Token.org == org.id)
    moment = now or utcnow()
    return [
        {
            "id": token.id,
            "org": token.org.slug,
            "scope": token.scope,
            "prefix": token.prefix + "…",
            "state": _state(token, moment),
            "created_at": iso(token.created_at),
            "expires_at": iso(token.expires_at) if token.expires_at else None,
            "description": token.description,
        }
        for token in query
    ]


def _state(token: Token, now: datetime) -> str:
    if token.revoked_at:
        return "revoked"
    return "expired" if token.expires_at and token.expires_at <= now else "active"


def revoke(token_id: int, actor: str = "admin:cli") -> Token:
    """Revoke a token at once (idempotent; ledgered the first time). The row comes back with its org loaded."""
    with write_transaction():
        row = Token.select(Token, Organization).join(Organization).where(Token.id == token_id).first()
        if row is None:
            raise TokenError(f"no token with id {token_id}; see 'syncd tokens list'")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            row.save()
            ledger.append(
                row.org_id,
                actor=actor,
                action="token.revoke",
                target=f"token:{row.id}",
                before={"revoked": False},
                after={"revoked": True},
                reason="revoked",
            )
    return row


def authenticate(presented: str | None, now: datetime | None = None) -> Principal | None:
    """Return the principal a bearer token stands for, or None when it is unknown, revoked or expired.

    Every SCIM request runs this. A token found valid is kept with the value the store's ``token_epoch`` counter
    had before it was read (:mod:`syncd.store.migrations`: it moves in the transaction of any change that can end a
    token's validity, whichever process makes it), and is served from memory while the counter has not moved since;
    so each request reads one counter instead of the token and its org, and a token revoked by ``syncd tokens
    revoke`` is refused from the next request on. Expiry is checked at every request. The statements are composed
    once (:mod:`syncd.store.sql`)."""
    if not presented or not presented.startswith(PREFIX):
        return None
    wanted = digest(presented)
    epoch = sql.run(sql.written("token.epoch", _epoch_query), ()).fetchone()[0]
    known = _known_tokens()
    found = known.get(wanted)
    if found is None or found[0] != epoch:
        found = _look_up(wanted, epoch)
        if found is None:
            return None
        if len(known) >= KNOWN_TOKENS:
            known.clear()
        known[wanted] = found
    _, principal, expires_at = found
    if expires_at is not None and expires_at <= (now or utcnow()):
        return None
    return principal


KNOWN_TOKENS = 1024
"""Valid tokens kept per database at most (then forgotten at once and read again as they are presented)."""
_Known = tuple[int, Principal, datetime | None]


def _known_tokens() -> dict[str, _Known]:
    """The valid tokens this process has seen in the open database, by digest: (epoch read before, principal,
    expiry). Kept on the database object, so a process that opens another store starts with none."""
    db = database.obj
    known = db.__dict__.get("_syncd_known_tokens")
    if known is None:
        known = db.__dict__["_syncd_known_tokens"] = {}
    return known  # type: ignore[no-any-return]


def _look_up(wanted: str, epoch: int) -> _Known | None:
    found = sql.rows("token.lookup", lambda: _lookup_query(wanted), (wanted,))
    if not found:
        return None
    token_id, org_id, scope, token_hash, expires_at, revoked_at, org_slug, org_status = found[0]
    if not hmac.compare_digest(token_hash, wanted) or revoked_at is not None or org_status != "active":
        return None
    principal = Principal(org_id=org_id, org_slug=org_slug, scope=scope, token_id=token_id)
    return epoch, principal, stored_time(expires_at) if expires_at is not None else None


def _epoch_query(d: Dialect) -> str:
    return f"SELECT {d.quote('n')} FROM {d.quote(TOKEN_EPOCH)}"


def _lookup_query(token_hash: str) -> peewee.Query:
    return (
        Token.select(
            Token.id,
            Token.org,
            Token.scope,
            Token.token_hash,
            Token.expires_at,
            Token.revoked_at,
            Organization.slug,
            Organization.status,
        )
        .join(Organization)
        .where(Token.token_hash == token_hash)
    )
