"""One identity folding (syncd/domain/folding.py): a person an HR export sends composed ("é", U+00E9) and an IdP
pushes decomposed ("e" + U+0301) and in upper case over SCIM is one member (``match_on = "userName"``; an email
is NFC-normalized by SCIM's address validation already, a userName is kept as sent). Through a running ``syncd serve`` over real HTTP, with a
file source beside SCIM."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import postgres_database
from tests.service.scim_push import HR_SOURCE, USER, Idp, acme_config, token

ORG = 'match_on = "userName"\n'

COMPOSED = "Jos\u00e9.Garc\u00eda"
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED).upper()


def test_a_person_sent_composed_by_a_file_and_decomposed_by_scim_is_one_member(serve, tmp_path, cli):
    assert COMPOSED != DECOMPOSED and unicodedata.normalize("NFC", DECOMPOSED).lower() == COMPOSED.lower()
    config = tmp_path / "syncd.toml"
    config.write_text(acme_config(f"sqlite:///{tmp_path / 's.db'}", org=ORG, sources=HR_SOURCE), encoding="utf-8")
    (tmp_path / "people.csv").write_text(f"user_name,email\n{COMPOSED},jgarcia@acme.com\n", encoding="utf-8")
    idp = Idp(serve(config, run=None), token(cli, config))
    idp.service.wait_ready()
    idp.service.wait_event("source.run.ok", where=lambda e: e.get("source") == "hr")

    idp.send("POST", "/Users", {"schemas": [USER], "userName": DECOMPOSED, "displayName": "Jose"}, 201)

    listed = cli("--config", str(config), "members", "list", "--org", "acme", "--format", "json")
    assert listed.code == 0, listed.stderr
    (member,) = json.loads(listed.stdout)
    assert member["status"] == "active" and member["sources"] == ["hr", "scim:acme"]
    shown = cli("--config", str(config), "members", "show", "--org", "acme", DECOMPOSED)
    assert shown.code == 0 and "jgarcia@acme.com" in shown.stdout, shown.stderr


@pytest.fixture(params=["sqlite", "postgresql-lc-ctype-c"])
def any_locale_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite, and a PostgreSQL database whose LC_CTYPE is C: its own ``lower`` maps ASCII letters only."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 's.db'}"
        return
    with postgres_database("syncd_test_ctype_c", "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0") as url:
        yield url


def test_filters_and_member_lookups_fold_non_ascii_letters_whatever_the_databases_locale(
    serve, tmp_path, cli, any_locale_url
):
    config = tmp_path / "syncd.toml"
    config.write_text(acme_config(any_locale_url, org=ORG, sources=HR_SOURCE), encoding="utf-8")
    (tmp_path / "people.csv").write_text("user_name,email\n", encoding="utf-8")
    idp = Idp(serve(config, run=None), token(cli, config))
    idp.service.wait_ready()
    person = {
        "schemas": [USER],
        "userName": "Élodie.Durand",
        "displayName": "Élodie Durand",
        "name": {"givenName": "Élodie", "familyName": "Durand"},
        "emails": [{"value": "Élodie.Durand@acme.com", "type": "work", "primary": True}],
    }
    created = idp.send("POST", "/Users", person, 201)

    for scim_filter in (
        'userName eq "ÉLODIE.DURAND"',
        'userName sw "élo"',
        'displayName eq "ÉLODIE DURAND"',
        'name.givenName sw "ÉLO"',
        'emails[type eq "work" and value eq "ÉLODIE.DURAND@ACME.COM"]',
    ):
        found = idp.send("GET", f"/Users?filter={quote(scim_filter)}")
        assert [user["id"] for user in found["Resources"]] == [created["id"]], scim_filter
    shown = cli("--config", str(config), "members", "show", "--org", "acme", "ÉLODIE.DURAND@ACME.COM")
    assert shown.code == 0 and "Élodie" in shown.stdout, shown.stderr
