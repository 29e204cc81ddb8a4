"""No silent drops: with ``match_on = "email"`` a SCIM user without ``emails`` joins by an email-shaped userName,
and an identity that still has no key is a note of ``syncd plan``, a metric, one log line and a line of
``syncd sources show``. Through a running ``syncd serve`` over real HTTP, with a file source beside SCIM."""

from __future__ import annotations

import json
import re

from tests.directory_checks import members
from tests.service.scim_push import HR_SOURCE, USER, Idp, acme_config, shape, token

ORG = 'match_on = "email"\n'


def test_identities_without_an_email_join_by_user_name_or_are_reported(serve, tmp_path, cli):
    config = tmp_path / "syncd.toml"
    url = f"sqlite:///{tmp_path / 's.db'}"
    config.write_text(acme_config(url, org=ORG, sources=HR_SOURCE), encoding="utf-8")
    (tmp_path / "people.csv").write_text("user_name,email\nhr-ghost,\n", encoding="utf-8")
    idp = Idp(serve(config, run=None), token(cli, config))
    idp.service.wait_ready()
    idp.service.wait_event("source.run.ok", where=lambda e: e.get("source") == "hr")

    zoe = idp.send("POST", "/Users", {"schemas": [USER], "userName": "Zoe@Acme.com", "displayName": "Zoe"}, 201)
    assert shape(members(cli, config)[None]) == ("active", "member", ())  # joined, by userName; not a guest
    ghost = idp.send("POST", "/Users", {"schemas": [USER], "userName": "jdoe", "displayName": "J"}, 201)["id"]
    idp.patch(f"/Users/{ghost}", {"op": "replace", "path": "displayName", "value": "J. Doe"})
    assert len(members(cli, config)) == 1
    from_file, from_scim = idp.service.events("identity.unmatched")  # once each, however often it is touched
    assert from_file["source"] == "hr" and from_file["count"] == 1 and from_file["ids"] == "hr-ghost"
    assert from_scim["id"] == ghost and from_scim["user_name"] == "jdoe"

    plan = json.loads(cli("--config", str(config), "plan", "--org", "acme", "--format", "json").stdout)
    notes = [n for n in plan["notes"] if "joins no member" in n]
    assert len(notes) == 2 and any(ghost in n for n in notes) and any("hr-ghost" in n for n in notes)

    scrape = idp.service.metrics().text
    assert re.search(r'^syncd_unmatched_identities\{source="scim:acme"\} 1\.0$', scrape, re.M), scrape
    assert re.search(r'^syncd_unmatched_identities\{source="hr"\} 1\.0$', scrape, re.M), scrape

    shown = cli("--config", str(config), "sources", "show", "scim:acme", "--format", "json")
    assert shown.code == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["source"]["kind"] == "scim"
    assert [u["id"] for u in document["unmatched"]] == [ghost]
    assert zoe["id"] not in shown.stdout
    text = cli("--config", str(config), "sources", "show", "hr").stdout
    assert "[unmatched]" in text and "hr-ghost" in text
    missing = cli("--config", str(config), "sources", "show", "nope")
    assert missing.code == 1 and "sources list" in missing.stderr
