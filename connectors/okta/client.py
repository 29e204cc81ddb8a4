"""One GET against the Okta management API, made trustworthy: rate-limited, retried, and read in full or not at all.

- ``429``: the bucket is marked empty until ``X-Rate-Limit-Reset`` and the request waits and goes again.
- ``5xx``, a cut connection, a truncated body or a body that is not the JSON array a list returns: retried with
  exponential backoff and half the page size, up to ``max_retries``; then the read stops with a ConnectorError.
- ``401``: an OAuth access token is fetched anew once (it may just have expired); otherwise the credentials are
  wrong. ``403``: the token lacks a permission or scope. Both stop the read with a line that says what to fix.

Error codes and summaries are Okta's error object (developer.okta.com, "Error codes"). Messages name the source,
the endpoint path and the fix, never a credential.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from connectors.interface import read_secret
from connectors.okta.auth import ServiceAppAuth, TokenAuth
from connectors.okta.paging import Page, limit_of, with_limit
from connectors.okta.ratelimit import RateLimiter, RateLimitTooLong, bucket_of
from connectors.okta.settings import Settings
from syncd.common.errors import ConnectorError

MAX_THROTTLED_ATTEMPTS = 30
USER_AGENT = "syncd-okta-connector"


class NotFound(Exception):
    """The object of a per-id request is gone (deleted between listing it and reading it)."""


class Cancelled(Exception):
    """Another part of the same read failed; this one stops before its next request."""


class OktaClient:
    """A requests session bound to one org, its credentials and its rate-limit state, for the span of one read."""

    def __init__(self, source: str, settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.source = source
        self.settings = settings
        self._sleep = sleep
        self._session = requests.Session()
        # trust_env off: REQUESTS_CA_BUNDLE would silently override ca_file, and a proxy taken from the
        # environment would see our credentials without anyone having chosen it.
        self._session.trust_env = False
        self._session.verify = settings.ca_file or True
        self._session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=settings.max_concurrency + 2, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self.limiter = RateLimiter(settings.rate_limit_share, settings.max_concurrency, settings.max_wait)
        self._origin = _origin(settings.base_url)
        self._count_lock = threading.Lock()
        self.requests_sent = 0
        self._cancelled = threading.Event()
        self.auth: TokenAuth | ServiceAppAuth
        if settings.oauth:
            assert settings.client_id and settings.private_key_file
            self.auth = ServiceAppAuth(
                source,
                f"{settings.base_url}/oauth2/v1/token",
                settings.client_id,
                settings.private_key_file,
                settings.key_id,
                settings.requested_scopes,
                self._post_form,
            )
        else:
            token = read_secret(settings, "token", source)
            assert token is not None  # Settings demands token_file or token_env when there is no client_id
            self.auth = TokenAuth(token)

    def close(self) -> None:
        self._session.close()

    def cancel(self) -> None:
        """Make every further request of this read raise Cancelled (a sibling request already failed)."""
        self._cancelled.set()

    def __enter__(self) -> OktaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """An absolute URL under the org for a first page; later pages come from next links only."""
        request = requests.Request("GET", f"{self.settings.base_url}{path}", params=params).prepare()
        assert request.url is not None
        return request.url

    def same_origin(self, url: str) -> bool:
        return _origin(url) == self._origin

    def get(self, url: str, what: str) -> Page:
        """GET one page of a list; raises ConnectorError when it cannot be read whole, NotFound on 404."""
        body, response = self._get_json(url, what)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise ConnectorError(self._line(what, "answered something other than a list of objects", "malformed"))
        return Page(body, response.links.get("next", {}).get("url"), _server_time(response))

    def get_object(self, url: str, what: str) -> dict[str, Any]:
        body, _ = self._get_json(url, what)
        if not isinstance(body, dict):
            raise ConnectorError(self._line(what, "answered something other than a JSON object", "malformed"))
        return body

    def _get_json(self, url: str, what: str) -> tuple[Any, requests.Response]:
        path = urlsplit(url).path
        bucket = bucket_of(path)
        failures = 0
        throttled = 0
        renewed = False
        while True:
            if self._cancelled.is_set():
                raise Cancelled(what)
            failure: str
            try:
                response = self._send("GET", url, bucket)
            except RateLimitTooLong as error:
                raise ConnectorError(
                    f"source {self.source}: Okta's rate limit for {error.bucket} resets only in "
                    f"{error.seconds:.0f}s (more than max_wait {self.settings.max_wait:.0f}s) while reading {what}; "
                    "nothing was applied — raise max_wait or rate_limit_share, or ask Okta for a higher limit"
                ) from None
            except requests.exceptions.SSLError:
                raise ConnectorError(
                    f"source {self.source}: TLS verification of {self._origin} failed while reading {what}; "
                    "check ca_file (the CA that signed the certificate, e.g. of a TLS-inspecting proxy)"
                ) from None
            except requests.RequestException as error:
                failure = _describe_transport(error)
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json(), response
                    except ValueError:
                        failure = "the body is not valid JSON (truncated or malformed page)"
                elif status == 429:
                    throttled += 1
                    if throttled > MAX_THROTTLED_ATTEMPTS:
                        raise ConnectorError(
                            self._line(what, f"stayed throttled (HTTP 429) for {throttled} attempts", "throttled")
                        )
                    continue
                elif status == 401 and not renewed and self.auth.renew(response):
                    renewed = True
                    continue
                elif status in (401, 403):
                    raise ConnectorError(self._refused(what, response))
                elif status == 404:
                    raise NotFound(path)
                elif status >= 500:
                    failure = f"HTTP {status}{_summary(response)}"
                else:
                    raise ConnectorError(
                        f"source {self.source}: Okta answered HTTP {status}{_summary(response)} to GET {path} while "
                        f"reading {what}; check the source settings (group_types, url)"
                    )
            failures += 1
            if failures > self.settings.max_retries:
                raise ConnectorError(
                    f"source {self.source}: reading {what} from Okta failed {failures} times in a row "
                    f"(last: {failure}); nothing was applied and the next run starts over — check Okta's status "
                    f"and the network path to {self._origin}"
                )
            delay = self.settings.retry_backoff * 2 ** (failures - 1) * random.uniform(0.75, 1.0)
            self._sleep(delay)
            limit = limit_of(url)
            if limit and limit > 1:
                url = with_limit(url, max(1, limit // 2))

    def _send(self, method: str, url: str, bucket: str, data: dict[str, str] | None = None) -> requests.Response:
        auth = None if data is not None else self.auth
        with self.limiter.slot(bucket, concurrent=data is None):
            with self._count_lock:
                self.requests_sent += 1
            response = self._session.request(
                method,
                url,
                data=data,
                auth=auth,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                allow_redirects=False,
            )
            self.limiter.observe(bucket, response.headers, throttled=response.status_code == 429)
        return response

    def _post_form(self, url: str, form: dict[str, str]) -> requests.Response:
        """POST to the token endpoint (rate-limited like any call); transport failures retried like GETs."""
        bucket = bucket_of(urlsplit(url).path)
        failures = 0
        while True:
            try:
                response = self._send("POST", url, bucket, data=form)
            except RateLimitTooLong as error:
                raise ConnectorError(
                    f"source {self.source}: the token endpoint's rate limit resets only in {error.seconds:.0f}s; "
                    "raise max_wait or retry later"
                ) from None
            except requests.RequestException as error:
                failure = _describe_transport(error)
            else:
                if response.status_code == 429:
                    continue
                if response.status_code < 500:
                    return response
                failure = f"HTTP {response.status_code}"
            failures += 1
            if failures > self.settings.max_retries:
                raise ConnectorError(
                    f"source {self.source}: the Okta token endpoint failed {failures} times ({failure}); "
                    f"check Okta's status and the network path to {self._origin}"
                )
            self._sleep(self.settings.retry_backoff * 2 ** (failures - 1))

    def _refused(self, what: str, response: requests.Response) -> str:
        status = response.status_code
        if status == 401:
            verdict = "rejected the credentials (HTTP 401" + _summary(response) + ")"
            return f"source {self.source}: Okta {verdict} while reading {what}; {self.auth.fix}"
        scopes = " ".join(self.settings.requested_scopes)
        fix = (
            f"grant the service app the scopes {scopes} and an admin role that can read users and groups"
            if self.settings.oauth
            else "give the token's admin a role that can read users and groups (Read-only Administrator)"
        )
        return f"source {self.source}: Okta refused access (HTTP 403{_summary(response)}) while reading {what}; {fix}"

    def _line(self, what: str, problem: str, kind: str) -> str:
        fixes = {
            "malformed": "nothing was applied; retry later, and check that url is the Okta org and not a proxy page",
            "throttled": "nothing was applied; lower the load on this org's API or raise its rate limit",
        }
        return f"source {self.source}: Okta {problem} while reading {what}; {fixes[kind]}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _summary(response: requests.Response) -> str:
    """`` E0000011 Invalid token provided`` from Okta's error object, or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code = str(body.get("errorCode") or "")
    summary = " ".join(str(body.get("errorSummary") or "").split())[:160]
    text = f"{code} {summary}".strip()
    return f" {text}" if text else ""


def _describe_transport(error: requests.RequestException) -> str:
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection broke mid-page (truncated body)"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "the connection failed or was cut"
    return type(error).__name__


def _server_time(response: requests.Response) -> datetime | None:
    date = response.headers.get("Date")
    if not date:
        return None
    try:
        return parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
