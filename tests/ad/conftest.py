"""Fixtures: one real Samba AD DC per test session (it needs ports 389/636, so there is only one), restored to its
pristine state for each test that changes it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.ldap import Settings
from tests.ad.samba import GROUPS, READER, STAFF, SambaDC, started


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """The loaded domain (3,000 users), shared by tests that only read it."""
    yield from started(Path(tempfile.mkdtemp(prefix="syncd-samba-")))


@pytest.fixture
def fresh_samba(samba_dc: SambaDC) -> Iterator[SambaDC]:
    """The same DC for a test that changes entries: restored to the loaded state after the test, so the tests
    that only read it always see it as loaded."""
    try:
        yield samba_dc
    finally:
        samba_dc.restore()


@pytest.fixture
def ad_settings() -> Callable[..., Settings]:
    """Settings reading ``dc`` over LDAPS as the plain domain user, with its CA as ``ca_file``."""

    def build(dc: SambaDC, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "url": dc.ldaps_url,
            "bind_dn": READER,
            "bind_password_file": str(dc.reader_password_file),
            "users_base": STAFF,
            "groups_base": GROUPS,
            "ca_file": str(dc.ca),
            "page_size": 500,
            "timeout": 30.0,
            "connect_timeout": 5.0,
        }
        values.update(overrides)
        return Settings(**values)

    return build
