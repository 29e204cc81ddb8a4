"""Fixtures: one real 389 Directory Server per test session (``dscreate`` takes ~9 s), loaded with a plain tree and a
FreeIPA-shaped tree. Tests that change entries work in a subtree of their own (see :func:`subtree`)."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connectors.ldap import Settings
from tests.ds389.directory import (
    IPA_SCHEMA,
    READ_ACI,
    SUFFIX,
    SYNCD_DN,
    SYNCD_PASSWORD,
    Entry,
    Layout,
    ipa_directory,
    plain_directory,
)
from tests.ds389.server import Ds389

#: Plugins a 389-DS deployment syncd reads would run: memberOf (transitive memberOf on people; it follows only
#: ``member`` unless told to follow ``uniqueMember`` too) and the retro changelog recording each change's nsUniqueId
#: (FreeIPA configures it the same way), for the changelog mode.
PLUGINS = {
    "cn=MemberOf Plugin,cn=plugins,cn=config": {
        "nsslapd-pluginEnabled": ["on"],
        "memberOfGroupAttr": ["member", "uniqueMember"],
    },
    "cn=Retro Changelog Plugin,cn=plugins,cn=config": {
        "nsslapd-pluginEnabled": ["on"],
        "nsslapd-attribute": ["nsuniqueid:targetUniqueId"],
    },
}
#: The retro changelog is readable by Directory Manager only until an ACI says otherwise.
CHANGELOG_ACI = (
    '(targetattr="*")(version 3.0; acl "syncd reads the retro changelog"; allow (read, search, compare) '
    f'userdn="ldap:///{SYNCD_DN}";)'
)


def add_entries(connection: ldap3.Connection, entries: list[Entry]) -> None:
    for dn, classes, attributes in entries:
        connection.add(dn, classes, attributes)


@pytest.fixture(scope="session")
def ds389() -> Iterator[tuple[Ds389, Layout, Layout]]:
    """The session's 389-DS instance, its plain tree's layout and its FreeIPA tree's layout."""
    server = Ds389(Path(tempfile.mkdtemp(prefix="syncd-389-")), SUFFIX)
    try:
        server.create()
        admin = server.admin()
        for dn, values in PLUGINS.items():
            admin.modify(dn, {name: [(ldap3.MODIFY_REPLACE, value)] for name, value in values.items()})
        admin.modify("cn=schema", {name: [(ldap3.MODIFY_ADD, value)] for name, value in IPA_SCHEMA.items()})
        admin.unbind()
        server.restart()
        admin = server.admin()
        plain, plain_layout = plain_directory()
        ipa, ipa_layout = ipa_directory()
        add_entries(admin, plain + ipa)
        admin.modify(SUFFIX, {"aci": [(ldap3.MODIFY_ADD, [READ_ACI])]})
        admin.modify("cn=changelog", {"aci": [(ldap3.MODIFY_ADD, [CHANGELOG_ACI])]})
        admin.unbind()
        yield server, plain_layout, ipa_layout
    finally:
        server.remove()


@pytest.fixture
def ds_admin(ds389: tuple[Ds389, Layout, Layout]) -> Iterator[ldap3.Connection]:
    connection = ds389[0].admin()
    yield connection
    connection.unbind()


_subtrees = itertools.count(1)


@pytest.fixture
def subtree(ds_admin: ldap3.Connection) -> Callable[[list[Entry]], str]:
    """``subtree(entries)`` makes a fresh ``ou=tN`` under the suffix, adds the entries (their DNs written with
    ``{base}`` for it) and returns its DN: a test that changes entries changes only its own."""

    def make(entries: list[Entry]) -> str:
        base = f"ou=t{next(_subtrees)},{SUFFIX}"
        ds_admin.add(base, ["organizationalUnit"], {"ou": base.split(",")[0][3:]})
        for dn, classes, attributes in entries:
            values = {
                k: [v.format(base=base) for v in vs] if isinstance(vs, list) else vs.format(base=base)
                for k, vs in attributes.items()
            }
            ds_admin.add(dn.format(base=base), classes, values)
        return base

    return make


@pytest.fixture(scope="session")
def ds_password_file() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="syncd-389-secret-"))
    path = folder / "bind_password"
    path.write_text(SYNCD_PASSWORD + "\n", encoding="utf-8")
    yield path
    path.unlink()
    folder.rmdir()


@pytest.fixture
def ds_settings(ds389: tuple[Ds389, Layout, Layout], ds_password_file: Path) -> Callable[..., Settings]:
    """Settings reading the session's 389-DS as the syncd service account, with small pages."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "url": ds389[0].url,
            "bind_dn": SYNCD_DN,
            "bind_password_file": str(ds_password_file),
            "page_size": 25,
            "timeout": 10.0,
            "connect_timeout": 3.0,
        }
        values.update(overrides)
        return Settings(**values)

    return build
