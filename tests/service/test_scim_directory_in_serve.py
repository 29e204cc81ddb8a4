"""A generated directory pushed Entra-style into a running ``syncd serve`` with rules, then a 5% change (leavers
deleted, disables, renames, group moves, joiners): every person's status, role and teams are compared with what
the rules imply, right after the pushes and again after a housekeeping pass. Real command, HTTP and reconciler."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tests.directory_checks import members
from tests.service.scim_push import Idp, acme_config, token, wait_for_housekeeping

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
RULES = """
[[orgs.rules]]
group = "IT Admins"
role = "admin"
[[orgs.rules]]
group_glob = "Eng*"
team = "engineering"
[[orgs.rules]]
group = "Sales"
team = "sales"
[[orgs.rules]]
group = "Team Leads"
role = "team_admin"
team = "leads"
team_role = "maintainer"
[[orgs.rules]]
attribute = {department = "Finance"}
team = "finance"
"""
GROUPS = ("IT Admins", "Engineering", "Sales", "Team Leads", "All Staff")
RANK = {"member": 1, "team_admin": 2, "admin": 3}


@dataclass
class Person:
    email: str
    department: str
    groups: set[str] = field(default_factory=set)
    active: bool = True
    present: bool = True
    id: str = ""


def implied(person: Person) -> tuple[str, str, tuple[str, ...]]:
    """What the rules say, computed independently of syncd: (status, role, teams) — teams for active people."""
    if not (person.present and person.active):
        return ("suspended", "-", ())
    role = "member"
    if "IT Admins" in person.groups:
        role = "admin"
    elif "Team Leads" in person.groups:
        role = "team_admin"
    teams = set()
    if "Engineering" in person.groups:
        teams.add("engineering")
    if "Sales" in person.groups:
        teams.add("sales")
    if "Team Leads" in person.groups:
        teams.add("leads")
    if person.department == "Finance":
        teams.add("finance")
    return ("active", role, tuple(sorted(teams)))


def observed(row: dict) -> tuple[str, str, tuple[str, ...]]:
    if row["status"] != "active":
        return (row["status"], "-", ())
    return ("active", row["role"], tuple(sorted(t["team"] for t in row["teams"])))


def push_user(idp: Idp, person: Person) -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": person.email.split("@")[0],
        "userName": person.email,
        "active": True,
        "displayName": person.email.split("@")[0].title(),
        "emails": [{"primary": True, "type": "work", "value": person.email}],
        "name": {"formatted": person.email, "familyName": "X", "givenName": "Y"},
        ENTERPRISE: {"department": person.department},
    }
    person.id = str(idp.send("POST", "/Users", body, 201)["id"])


def check(cli, config, people: list[Person]) -> None:
    rows = members(cli, config)
    wrong = {p.email: (implied(p), observed(rows[p.email])) for p in people if implied(p) != observed(rows[p.email])}
    assert not wrong, f"{len(wrong)} of {len(people)} wrong: {dict(list(wrong.items())[:5])}"
    assert set(rows) == {p.email for p in people}


def test_a_generated_directory_and_a_five_percent_change_come_out_exactly_as_the_rules_say(serve, tmp_path, cli):
    rng = random.Random(10)
    config = tmp_path / "syncd.toml"
    url = f"sqlite:///{tmp_path / 's.db'}"
    config.write_text(acme_config(url, server='housekeeping_every = "2s"', org=RULES), encoding="utf-8")
    idp = Idp(serve(config, run=None), token(cli, config))
    idp.service.wait_ready()

    people = [Person(f"user{i:03d}@acme.com", rng.choice(["Finance", "R&D", "Ops"])) for i in range(200)]
    for person in people:
        push_user(idp, person)
        person.groups.add("All Staff")
        for name, share in (("IT Admins", 0.05), ("Engineering", 0.4), ("Sales", 0.3), ("Team Leads", 0.08)):
            if rng.random() < share:
                person.groups.add(name)
    group_ids = {}
    for name in GROUPS:
        group_ids[name] = idp.group(name)
        inside = [p.id for p in people if name in p.groups]
        for start in range(0, len(inside), 50):  # Entra adds members in PATCHes of a few at a time
            idp.patch(
                f"/Groups/{group_ids[name]}",
                {"op": "Add", "path": "members", "value": [{"value": i} for i in inside[start : start + 50]]},
            )
    check(cli, config, people)

    # The 5% change: 2 leavers deleted, 2 disabled (Entra's string "False"), 2 renamed, 2 group moves, 2 joiners.
    picked = rng.sample(people, 8)
    for person in picked[0:2]:
        idp.delete(person.id)
        person.present = False
    for person in picked[2:4]:
        idp.patch(f"/Users/{person.id}", {"op": "Replace", "path": "active", "value": "False"})
        person.active = False
    for person in picked[4:6]:
        idp.patch(
            f"/Users/{person.id}",
            {"op": "Replace", "path": "displayName", "value": "Renamed Person"},
            {"op": "Replace", "path": "userName", "value": f"renamed-{person.email}"},
        )
    for person in picked[6:8]:
        for name in ("Engineering", "Sales", "IT Admins"):
            if name in person.groups:
                idp.remove_member(group_ids[name], person.id)
                person.groups.discard(name)
        idp.add_members(group_ids["Team Leads"], person.id)
        person.groups.add("Team Leads")
    for i in range(2):
        joiner = Person(f"joiner{i}@acme.com", "Finance", {"Engineering", "All Staff"})
        push_user(idp, joiner)
        idp.add_members(group_ids["Engineering"], joiner.id)
        idp.add_members(group_ids["All Staff"], joiner.id)
        people.append(joiner)
    check(cli, config, people)

    wait_for_housekeeping()
    wait_for_housekeeping()
    check(cli, config, people)
