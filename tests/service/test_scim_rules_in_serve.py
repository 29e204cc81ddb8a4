"""SCIM pushes into a running ``syncd serve`` shape the org exactly as the rules say, alongside a polled source,
across a config reload and after housekeeping. The real command, real HTTP, the real reconciler and config."""

from __future__ import annotations

import signal

from tests.directory_checks import members
from tests.service.scim_push import HR_SOURCE, Idp, acme_config, shape, token

RULES_V1 = """
[[orgs.rules]]
group = "IT Admins"
role = "admin"
[[orgs.rules]]
group = "Engineering"
team = "engineering"
"""
RULES_V2 = (
    RULES_V1
    + """
[[orgs.rules]]
group = "Engineering"
role = "team_admin"
"""
)


def write_config(path, url, rules: str) -> None:
    org = "[orgs.policy]\nguard_max_percent = 100\nguard_max_count = 1000\n" + rules
    sources = HR_SOURCE + "precedence = 5\n"
    path.write_text(acme_config(url, server='housekeeping_every = "2s"', org=org, sources=sources), encoding="utf-8")


def test_scim_pushes_follow_the_rules_beside_a_file_source_and_through_a_reload(serve, tmp_path, cli):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    (tmp_path / "people.csv").write_text("email,name,groups\nada@acme.com,Ada,IT Admins\n", encoding="utf-8")
    write_config(config, url, RULES_V1)
    idp = Idp(serve(config, run=None), token(cli, config))
    idp.service.wait_ready()
    idp.service.wait_event("source.run.ok", where=lambda e: e.get("source") == "hr")
    assert shape(members(cli, config)["ada@acme.com"]) == ("active", "admin", ())

    # Ada pushed by SCIM, in no SCIM group: the file still makes her admin, whichever source wrote last.
    ada = idp.user("ada@acme.com", "Ada")
    now = members(cli, config)
    assert shape(now["ada@acme.com"]) == ("active", "admin", ())
    assert now["ada@acme.com"]["sources"] == ["hr", "scim:acme"]

    bob = idp.user("bob@acme.com")
    erin = idp.user("erin@acme.com")
    carol = idp.user("carol@acme.com")
    engineering = idp.group("Engineering", [bob, erin])
    admins = idp.group("IT Admins", [carol])
    now = members(cli, config)
    assert shape(now["bob@acme.com"]) == ("active", "member", ("engineering",))
    assert shape(now["erin@acme.com"]) == ("active", "member", ("engineering",))
    assert shape(now["carol@acme.com"]) == ("active", "admin", ())

    # A displayName change keeps the team; a group rename replans its members.
    idp.patch(f"/Users/{bob}", {"op": "replace", "path": "displayName", "value": "Robert"})
    assert shape(members(cli, config)["bob@acme.com"]) == ("active", "member", ("engineering",))
    idp.patch(f"/Groups/{admins}", {"op": "replace", "path": "displayName", "value": "Former Admins"})
    assert shape(members(cli, config)["carol@acme.com"]) == ("active", "member", ())
    idp.patch(f"/Groups/{admins}", {"op": "replace", "path": "displayName", "value": "IT Admins"})
    assert shape(members(cli, config)["carol@acme.com"]) == ("active", "admin", ())
    idp.remove_member(engineering, erin)
    assert shape(members(cli, config)["erin@acme.com"]) == ("active", "member", ())
    idp.add_members(engineering, erin)

    # Reload: the next SCIM write uses the new rules at once.
    write_config(config, url, RULES_V2)
    idp.service.signal(signal.SIGHUP)
    idp.service.wait_event("config.reloaded")
    idp.patch(f"/Users/{bob}", {"op": "replace", "path": "title", "value": "Engineer"})
    dave = idp.user("dave@acme.com")
    idp.add_members(engineering, dave)
    now = members(cli, config)
    assert shape(now["bob@acme.com"]) == ("active", "team_admin", ("engineering",))
    assert shape(now["dave@acme.com"]) == ("active", "team_admin", ("engineering",))

    # Housekeeping plans the whole org with the reloaded rules: Erin, untouched since the reload, follows.
    idp.service.wait_event("org.housekeeping", where=lambda e: e.get("org") == "acme", timeout=60)
    after = members(cli, config)
    expected = {
        "ada@acme.com": ("active", "admin", ()),
        "bob@acme.com": ("active", "team_admin", ("engineering",)),
        "carol@acme.com": ("active", "admin", ()),
        "dave@acme.com": ("active", "team_admin", ("engineering",)),
        "erin@acme.com": ("active", "team_admin", ("engineering",)),
    }
    assert {email: shape(m) for email, m in after.items()} == expected

    # Touching everyone again changes no role or team: SCIM writes and housekeeping agree (no flip-flop).
    before = cli("--config", str(config), "audit", "export", "--org", "acme", "--format", "jsonl").stdout
    for user in (ada, bob, carol, dave, erin):
        idp.patch(f"/Users/{user}", {"op": "replace", "path": "title", "value": "Same"})
    idp.send(
        "PUT",
        f"/Users/{ada}",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@acme.com",
            "displayName": "Ada",
            "emails": [{"value": "ada@acme.com", "primary": True}],
        },
    )
    assert {email: shape(m) for email, m in members(cli, config).items()} == expected
    later = cli("--config", str(config), "audit", "export", "--org", "acme", "--format", "jsonl").stdout
    new_lines = later.splitlines()[len(before.splitlines()) :]
    assert not [line for line in new_lines if '"member.role"' in line or '"team.' in line], new_lines
