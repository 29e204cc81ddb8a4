"""One identity folding (syncd/domain/folding.py): a person an HR export sends composed ("é", U+00E9) and an IdP
pushes decomposed ("e" + U+0301) and in upper case over SCIM is one member (``match_on = "userName"``; an email
is NFC-normalized by SCIM's address validation already, a userName is kept as sent). Through a running ``syncd serve`` over real HTTP, with a
file source beside SCIM."""

from __future__ import annotations

import json
import unicodedata

from tests.service.scim_push import USER, Idp, token

CONFIG = """[database]
url = "{url}"

[logging]
format = "json"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["acme.com"]
match_on = "userName"

[[sources]]
name = "hr"
org = "acme"
kind = "file"
schedule = "1h"
path = "people.csv"
"""

COMPOSED = "Jos\u00e9.Garc\u00eda"
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED).upper()


def test_a_person_sent_composed_by_a_file_and_decomposed_by_scim_is_one_member(serve, tmp_path, cli):
    assert COMPOSED != DECOMPOSED and unicodedata.normalize("NFC", DECOMPOSED).lower() == COMPOSED.lower()
    config = tmp_path / "syncd.toml"
    config.write_text(CONFIG.format(url=f"sqlite:///{tmp_path / 's.db'}"), encoding="utf-8")
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
