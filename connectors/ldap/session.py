"""One LDAP session for one read: failover across the configured URLs, TLS, bind, searches and their failures.

Every failure becomes a :class:`ConnectorError` whose single line names the source, the server, what failed and
what to check — never the bind password. Paging (RFC 2696) is driven here page by page rather than through
ldap3's ``paged_search`` generator, because that generator ends quietly when a page fails with
``raise_exceptions=False``, and a quietly short read must never look complete.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_errors

from connectors.ldap.settings import Settings
from syncd.common.errors import ConnectorError

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
SCOPES = {"sub": ldap3.SUBTREE, "one": ldap3.LEVEL, "base": ldap3.BASE}
Control = tuple[str, bool, bytes | None]

_RESULT_ADVICE = {
    3: "the server's time limit ran out (timeLimitExceeded); raise time_limit or the server's limit for bind_dn",
    4: "the server's size limit was hit (sizeLimitExceeded); give bind_dn unlimited size limits "
    "(OpenLDAP: limits dn.exact=... size=unlimited; AD: MaxPageSize) or narrow the filter",
    11: "the server's administrative limit was hit (adminLimitExceeded); raise the limits for bind_dn",
    12: "the server does not support a critical control (unavailableCriticalExtension); check flavor and incremental",
    32: "the base does not exist (noSuchObject); check users_base / groups_base",
    50: "bind_dn may not read there (insufficientAccessRights); check the directory's ACLs for bind_dn",
    51: "the server is busy; it will be retried on the next run",
    52: "the server is unavailable; check the server",
    53: "the server refused the operation (unwillingToPerform); check the filter and the server's limits",
}


class Session:
    """A bound, read-only connection to the first reachable server of ``settings.urls``."""

    def __init__(self, source: str, settings: Settings, password: str | None) -> None:
        self.source = source
        self.settings = settings
        self._password = password
        self.url = ""
        self.connection: ldap3.Connection | None = None
        self.root_dse: dict[str, list[Any]] = {}

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def fail(self, text: str) -> ConnectorError:
        """A one-line error naming the source; the password is scrubbed should any library ever echo it."""
        line = f"source {self.source}: {text}".replace("\n", " ")
        if self._password:
            line = line.replace(self._password, "***")
        return ConnectorError(line)

    def open(self) -> None:
        """Connect and bind to the first server that answers, in the order of ``url`` (failover).

        A refused bind stops at once: the other servers hold the same accounts, and retrying a wrong password on
        each would only lock the account faster.
        """
        failures: list[str] = []
        for url in self.settings.urls:
            try:
                self.connection = self._connect(url)
            except _Unreachable as error:
                failures.append(f"{url}: {error}")
                continue
            self.url = url
            self.root_dse = self._read_root_dse()
            return
        what = "; ".join(failures)
        raise self.fail(f"no LDAP server reachable ({what}); check url, the network and that the server is up")

    def _connect(self, url: str) -> ldap3.Connection:
        settings = self.settings
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_data=self._trusted_cas())
        server = ldap3.Server(url, get_info=ldap3.NONE, connect_timeout=settings.connect_timeout, tls=tls)
        connection = ldap3.Connection(
            server,
            user=settings.bind_dn,
            password=self._password,
            authentication=ldap3.SIMPLE if settings.bind_dn else ldap3.ANONYMOUS,
            receive_timeout=max(1, math.ceil(settings.timeout)),
            auto_referrals=False,
            read_only=True,
            raise_exceptions=False,
            return_empty_attributes=False,
            # Ranged values (member;range=0-1499) are collected by syncd (vendor/ad.collect_ranged), one code path.
            auto_range=False,
        )
        try:
            connection.open()
            if settings.start_tls and not connection.start_tls():
                raise _Unreachable(f"StartTLS failed ({connection.result.get('description')}); check ca_file")
            bound = connection.bind()
        except ldap_errors.LDAPStartTLSError as error:
            raise _Unreachable(
                f"StartTLS failed ({_reason(error)}); check ca_file and the server certificate"
            ) from None
        except ldap_errors.LDAPSocketOpenError as error:
            reason = _reason(error)
            if "ssl" in reason.lower() or "certificate" in reason.lower() or "tls" in reason.lower():
                raise _Unreachable(
                    f"TLS handshake failed ({reason}); check ca_file and the server certificate"
                ) from None
            raise _Unreachable(reason) from None
        except ldap_errors.LDAPCommunicationError as error:
            raise _Unreachable(_reason(error)) from None
        if not bound:
            description = connection.result.get("description") or "refused"
            code = connection.result.get("result")
            connection.unbind()
            secret_key = "bind_password_file" if settings.bind_password_file else "bind_password_env"
            if code in (51, 52):
                raise _Unreachable(f"bind answered {description}")
            if code == 13:
                raise self.fail(
                    f"bind to {url} refused: the server requires TLS (confidentialityRequired); "
                    "use an ldaps:// url or start_tls = true"
                )
            if code == 49:
                raise self.fail(
                    f"bind to {url} as {settings.bind_dn} refused (invalid credentials); check bind_dn and {secret_key}"
                )
            raise self.fail(f"bind to {url} as {settings.bind_dn or 'anonymous'} failed ({description}); check bind_dn")
        return connection

    def _trusted_cas(self) -> str | None:
        """The system's CA bundle plus ``ca_file`` (docs/architecture.md, "Contracts": an extra CA); ``None``
        leaves the system's store alone."""
        if not self.settings.ca_file:
            return None
        try:
            extra = Path(self.settings.ca_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise self.fail(f"cannot read ca_file {self.settings.ca_file} ({error}); check the path") from None
        system = ssl.get_default_verify_paths().cafile
        bundle = Path(system).read_text(encoding="utf-8") if system and Path(system).is_file() else ""
        return bundle + "\n" + extra

    def _read_root_dse(self) -> dict[str, list[Any]]:
        """The rootDSE (RFC 4512 §5.1), for flavour detection and AD's USN position."""
        entries = self.search("the rootDSE", "", "(objectClass=*)", "base", ["*", "+"])
        return {key: list(values) for key, values in entries[0]["attributes"].items()} if entries else {}

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(ldap_errors.LDAPException):
                self.connection.unbind()
            self.connection = None

    def paged(
        self,
        what: str,
        base: str,
        search_filter: str,
        scope: str,
        attributes: Sequence[str],
        controls: Sequence[Control] = (),
    ) -> Iterator[dict[str, Any]]:
        """Yield the entries of a paged search (RFC 2696), one page in memory at a time.

        A failure on any page raises: a read that lost a page is not a read. Continuation references (RFC 4511
        §4.5.3) are yielded as ``{"type": "searchResRef", "uri": [...]}`` for the caller to judge.
        """
        cookie: bytes | None = None
        seen = 0
        while True:
            result, response = self._search(
                what, base, search_filter, scope, attributes, controls, self.settings.page_size, cookie, seen
            )
            for item in response:
                if item["type"] == "searchResEntry":
                    seen += 1
                    yield item
                elif item["type"] == "searchResRef":
                    yield item
            control = (result.get("controls") or {}).get(PAGED_RESULTS_OID)
            cookie = control["value"]["cookie"] if control else None
            if not cookie:
                return

    def search(
        self,
        what: str,
        base: str,
        search_filter: str,
        scope: str,
        attributes: Sequence[str],
        controls: Sequence[Control] = (),
        accept: tuple[int, ...] = (),
        size_limit: int = 0,
    ) -> list[dict[str, Any]]:
        """One search request; every response message (entries, references, intermediate messages) in order.

        Result codes in ``accept`` are the caller's to handle (see :meth:`last_result`) instead of an error.
        """
        _, response = self._search(
            what, base, search_filter, scope, attributes, controls, None, None, 0, accept, size_limit
        )
        return response

    def last_result(self) -> dict[str, Any]:
        assert self.connection is not None
        return self.connection.result or {}

    def _search(
        self,
        what: str,
        base: str,
        search_filter: str,
        scope: str,
        attributes: Sequence[str],
        controls: Sequence[Control],
        page_size: int | None,
        cookie: bytes | None,
        seen: int,
        accept: tuple[int, ...] = (),
        size_limit: int = 0,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        assert self.connection is not None
        where = f"{what} on {self.url}"
        try:
            self.connection.search(
                base,
                search_filter,
                SCOPES[scope],
                dereference_aliases=ldap3.DEREF_NEVER,
                attributes=list(attributes),
                time_limit=self.settings.time_limit,
                size_limit=size_limit,
                controls=list(controls) or None,
                paged_size=page_size,
                paged_cookie=cookie,
            )
        except ldap_errors.LDAPInvalidFilterError as error:
            raise self.fail(f"{where}: invalid filter {search_filter!r} ({_reason(error)}); fix the filter") from None
        except (ldap_errors.LDAPResponseTimeoutError, ldap_errors.LDAPCommunicationError) as error:
            reason = _reason(error)
            if isinstance(error, ldap_errors.LDAPResponseTimeoutError) or "timed out" in reason:
                raise self.fail(
                    f"{where}: no answer within {self.settings.timeout:g} s after {seen} entries; "
                    "nothing was applied; check the server's load or raise timeout"
                ) from None
            raise self.fail(
                f"{where}: the connection broke after {seen} entries ({reason}); nothing was applied; "
                "check that the server is up"
            ) from None
        except ldap_errors.LDAPException as error:
            raise self.fail(f"{where}: search failed after {seen} entries ({_reason(error)})") from None
        result = self.connection.result or {}
        code = result.get("result", 0)
        if code == 10:
            referrals = ", ".join(result.get("referrals") or []) or "another server"
            raise self.fail(
                f"{where}: {base} is held by another server (referral to {referrals}); point url at that server "
                "or change the base"
            )
        if code != 0 and code not in accept:
            advice = _RESULT_ADVICE.get(code) or f"the server answered {result.get('description')} ({code})"
            message = result.get("message") or ""
            detail = f" [{message}]" if message else ""
            raise self.fail(f"{where}: search under {base} failed after {seen} entries: {advice}{detail}")
        return result, list(self.connection.response or [])


class _Unreachable(Exception):
    """This server cannot be used; the next URL may be."""


def _reason(error: BaseException) -> str:
    """The library's text without the tuple-in-string wrapping ldap3 gives socket errors."""
    text = (str(error).strip() or type(error).__name__).replace("\n", " ")
    text = re.sub(r"^[(\"',\s]+|[)\"',\s]+$", "", text)
    return text.replace("\\'", "'") or type(error).__name__
