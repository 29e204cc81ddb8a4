"""The fast paths of SCIM writes change nothing a client or an auditor sees.

- A write of a user that changes nothing a plan reads (a title without attribute rules) plans no one once the org's
  last whole-org plan was made under the same rules; the members and the ledger end exactly as when every write
  plans its member, and a rule change or an attribute rule makes such a write plan again.
- A written user in groups is answered without validating it through the models again: the same bytes as the model
  path and as a read of it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from scim import create_app
from syncd import config as config_module
from syncd.store.models import LedgerEntry, Member
from syncd.sync import pipeline
from tests.scim.conftest import BASE, Client, ScimWorld, make_config

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def person(user_name: str, domain: str = "acme.com", **extra: Any) -> dict[str, Any]:
    return {
        "schemas": [USER],
        "userName": user_name,
        "displayName": user_name.title(),
        "emails": [{"value": f"{user_name}@{domain}", "primary": True}],
        **extra,
    }


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The members each SCIM write planned (the planner's calls)."""
    planned: list[list[str]] = []
    real = pipeline.reconcile

    def spy(observed: Any, *args: Any) -> Any:
        planned.append(sorted({identity.match_key for identity in observed.identities}))
        return real(observed, *args)

    monkeypatch.setattr(pipeline, "reconcile", spy)
    return planned


def with_rules(*rules: dict[str, Any]) -> config_module.Config:
    return config_module.parse(
        {"server": {"max_body_bytes": 1_048_576}, "orgs": [{"slug": "acme", "name": "Acme", "rules": list(rules)}]}
    )


def test_a_write_that_changes_nothing_a_plan_reads_plans_no_one_once_the_org_is_planned(
    scim: ScimWorld, plans: list[list[str]]
) -> None:
    ada = scim.a.post("/Users", person("ada")).body
    pipeline.reconcile_org(make_config(), "acme")
    plans.clear()
    entries = LedgerEntry.select().count()

    answer = scim.a.put(f"/Users/{ada['id']}", person("ada", title="Engineer"))
    assert answer.status == 200 and answer.body["title"] == "Engineer"
    assert plans == [] and LedgerEntry.select().count() == entries

    answer = scim.a.put(f"/Users/{ada['id']}", person("ada", title="Engineer", displayName="Ada L."))
    assert answer.status == 200
    assert plans == [["ada@acme.com"]]
    assert Member.get(Member.email == "ada@acme.com").display_name == "Ada L."


def test_until_the_org_is_planned_under_the_current_rules_every_write_plans_its_member(
    scim: ScimWorld, plans: list[list[str]]
) -> None:
    ada = scim.a.post("/Users", person("ada")).body
    plans.clear()
    scim.a.put(f"/Users/{ada['id']}", person("ada", title="Engineer"))
    assert plans == [["ada@acme.com"]]  # never planned whole: no basis to trust

    pipeline.reconcile_org(make_config(), "acme")
    promoted = with_rules({"attribute": {"userName": "ada"}, "role": "admin"})
    client = Client(create_app(promoted).test_client(), scim.tokens["a"])
    plans.clear()
    client.put(f"/Users/{ada['id']}", person("ada", title="Lead"))
    assert plans == [["ada@acme.com"]]  # the rules changed since: the write applies them at once
    assert Member.get(Member.email == "ada@acme.com").role == "admin"


def test_with_attribute_rules_a_title_change_is_planned(scim: ScimWorld, plans: list[list[str]]) -> None:
    config = with_rules({"attribute": {"title": "Boss"}, "role": "admin"})
    client = Client(create_app(config).test_client(), scim.tokens["a"])
    ada = client.post("/Users", person("ada")).body
    pipeline.reconcile_org(config, "acme")
    plans.clear()
    client.put(f"/Users/{ada['id']}", person("ada", title="Boss"))
    assert plans == [["ada@acme.com"]]
    assert Member.get(Member.email == "ada@acme.com").role == "admin"


def ledger_of(org_id: int, slug: str) -> str:
    """The org's ledger entries written by SCIM writes, with the org's name made ``acme`` and plan ids ``ID``."""
    query = LedgerEntry.select().where((LedgerEntry.org == org_id) & LedgerEntry.actor.startswith("token:"))
    entries = [(e.action, e.target, e.before, e.after, e.reason) for e in query.order_by(LedgerEntry.seq)]
    return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "ID", json.dumps(entries).replace(slug, "acme"))


def members_of(org_id: int, slug: str) -> str:
    query = Member.select().where(Member.org == org_id).order_by(Member.match_key)
    rows = [(m.match_key, m.email, m.user_name, m.display_name, m.status, m.role, m.manager) for m in query]
    return json.dumps(rows).replace(slug, "acme")


def pushes(client: Client, domain: str) -> None:
    """Writes of every kind an IdP sends, some changing what plans read and some not."""
    ada = client.post("/Users", person("ada", domain)).body["id"]
    bob = client.post("/Users", person("bob", domain, title="Intern")).body["id"]
    group = client.post("/Groups", {"displayName": "Staff", "members": [{"value": ada}]}).body["id"]
    client.put(f"/Users/{bob}", person("bob", domain, title="Engineer", phoneNumbers=[{"value": "+1 555 0100"}]))
    client.patch(f"/Users/{ada}", [{"op": "replace", "path": "title", "value": "Lead"}])
    client.put(f"/Users/{bob}", person("bob", domain, title="Engineer", displayName="Robert"))
    manager = {ENTERPRISE: {"manager": {"value": ada}}}
    client.put(f"/Users/{bob}", {**person("bob", domain, title="Engineer", displayName="Robert"), **manager})
    client.patch(f"/Users/{ada}", [{"op": "replace", "path": "emails", "value": [{"value": f"ada2@{domain}"}]}])
    client.patch(f"/Users/{bob}", [{"op": "replace", "path": "active", "value": False}])
    client.patch(f"/Users/{bob}", [{"op": "replace", "path": "title", "value": "Gone"}])
    client.patch(f"/Users/{bob}", [{"op": "replace", "path": "active", "value": True}])
    client.patch(f"/Groups/{group}", [{"op": "add", "path": "members", "value": [{"value": bob}]}])
    client.delete(f"/Users/{ada}")


def test_writes_leave_the_same_members_and_ledger_with_and_without_the_fast_path(
    scim: ScimWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    pipeline.reconcile_org(config, "acme")
    pipeline.reconcile_org(config, "globex")
    pushes(scim.a, "acme.com")
    monkeypatch.setattr(pipeline, "_planned_under", lambda org, rules: False)  # every write plans its member
    pushes(scim.b, "globex.com")
    fast = ledger_of(scim.org_a.id, "acme")
    assert fast.count('"member.update"') >= 3 and '"plan.held"' in fast
    assert fast == ledger_of(scim.org_b.id, "globex")
    assert members_of(scim.org_a.id, "acme") == members_of(scim.org_b.id, "globex")


@pytest.fixture
def model_app(scim: ScimWorld) -> Any:
    return create_app(make_config(), stored_reads=False)


def answer(app: Any, token: str, method: str, path: str, body: Any = None, query: Any = None) -> tuple[Any, ...]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    data = None if body is None else json.dumps(body)
    got = app.test_client().open(BASE + path, method=method, data=data, headers=headers, query_string=query)
    return got.status_code, got.data, sorted((k, v) for k, v in got.headers.items() if k != "Content-Length")


@pytest.mark.parametrize("query", [None, {"excludedAttributes": "nickName"}, {"attributes": "groups,userName"}])
def test_a_written_user_in_groups_is_answered_as_the_model_path_and_a_read_answer_it(
    scim: ScimWorld, model_app: Any, query: Any
) -> None:
    token = scim.tokens["a"]
    ada = scim.a.post("/Users", person("ada")).body["id"]
    for name in ("Staff", "Admins"):
        scim.a.post("/Groups", {"displayName": name, "members": [{"value": ada}]})
    for title, app in (("Lead", scim.app), ("Chief", model_app)):
        body = person("ada", title=title, nickName="A", name={"givenName": "Ada", "familyName": "Lovelace"})
        status, written, headers = answer(app, token, "PUT", f"/Users/{ada}", body, query)
        read = answer(model_app, token, "GET", f"/Users/{ada}", None, query)
        assert (status, written, headers) == (200, read[1], read[2])
        assert [group["display"] for group in json.loads(written)["groups"]] == ["Staff", "Admins"]


def test_a_write_reads_its_row_again_only_after_waiting_for_a_row_lock(
    scim: ScimWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's write transaction holds the write lock from its start: the row read is current. PostgreSQL reads it
    again once its row lock is taken (another write may have committed meanwhile)."""
    from syncd.store import dialect
    from tests.scim.test_scim_members import recorded_sql

    ada = scim.a.post("/Users", person("ada")).body["id"]
    with recorded_sql(monkeypatch) as statements:
        assert scim.a.put(f"/Users/{ada}", person("ada", title="Lead")).status == 200
        assert scim.a.delete(f"/Users/{ada}").status == 204
    reads = [s for s in statements if s.startswith('SELECT "id", "key", "resource"') and 'AND "key" =' in s]
    assert len(reads) == (4 if dialect.of().postgres else 2)
