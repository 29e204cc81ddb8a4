"""Isolation (docs/architecture.md invariant 6): a token of org A never sees org B's resources, not even their
existence."""

from __future__ import annotations

from syncd.store.models import DirectoryGroup, GroupMember, Identity

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"


def seed(scim):
    b_user = scim.b.create_user("secret.person@globex.com", externalId="B-EXT", title="Spy")
    b_group = scim.b.create_group("Globex Secret Project", [b_user["id"]])
    a_user = scim.a.create_user("alice@acme.com", title="Engineer")
    return a_user, b_user, b_group


def test_get_put_patch_delete_of_another_orgs_ids_are_404(scim):
    _, b_user, b_group = seed(scim)
    for path in (f"/Users/{b_user['id']}", f"/Groups/{b_group['id']}"):
        assert scim.a.get(path).status == 404
        assert scim.a.put(path, {"schemas": [USER_URN], "userName": "x", "displayName": "x"}).status == 404
        assert scim.a.patch(path, [{"op": "replace", "path": "displayName", "value": "pwned"}]).status == 404
        assert scim.a.delete(path).status == 404
    assert scim.b.get(f"/Users/{b_user['id']}").body["userName"] == "secret.person@globex.com"
    assert scim.b.get(f"/Groups/{b_group['id']}").body["displayName"] == "Globex Secret Project"


def test_not_found_texts_are_the_same_for_another_orgs_id_and_a_random_one(scim):
    _, b_user, _ = seed(scim)
    foreign = scim.a.get(f"/Users/{b_user['id']}").body
    random = scim.a.get("/Users/00000000-0000-0000-0000-000000000000").body
    assert foreign["detail"].replace(b_user["id"], "ID") == random["detail"].replace(
        "00000000-0000-0000-0000-000000000000", "ID"
    )
    assert "globex" not in str(foreign).lower()


def test_lists_filters_and_sorting_never_return_another_orgs_resources(scim):
    a_user, _, _ = seed(scim)
    everything = scim.a.get("/Users", query={"sortBy": "title", "sortOrder": "descending"}).body
    assert everything["totalResults"] == 1 and [r["id"] for r in everything["Resources"]] == [a_user["id"]]
    for expression in (
        'userName eq "secret.person@globex.com"',
        'externalId eq "B-EXT"',
        'title eq "Spy"',
        'userName co "globex" or title pr',
        'not (userName eq "alice@acme.com")',
    ):
        found = scim.a.get("/Users", query={"filter": expression}).body
        assert all(r["id"] == a_user["id"] for r in found["Resources"]), expression
    groups = scim.a.get("/Groups", query={"filter": 'displayName co "Secret"'}).body
    assert groups["totalResults"] == 0
    assert scim.a.get("/Groups").body["totalResults"] == 0


def test_member_filters_cannot_reach_another_orgs_groups(scim):
    _, b_user, b_group = seed(scim)
    by_member = scim.a.get("/Groups", query={"filter": f'members.value eq "{b_user["id"]}"'}).body
    by_group = scim.a.get("/Users", query={"filter": f'groups.value eq "{b_group["id"]}"'}).body
    assert by_member["totalResults"] == 0 and by_group["totalResults"] == 0


def test_another_orgs_user_cannot_be_added_as_a_member(scim):
    _, b_user, _ = seed(scim)
    group = scim.a.create_group("Acme team")
    answer = scim.a.patch(
        f"/Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": b_user["id"]}]}]
    )
    assert answer.status == 400
    assert "globex" not in str(answer.body).lower()
    assert (
        GroupMember.select().where(GroupMember.group == DirectoryGroup.get(DirectoryGroup.key == group["id"])).count()
        == 0
    )


def test_bulk_cannot_touch_another_orgs_resources(scim):
    _, b_user, b_group = seed(scim)
    answer = scim.a.post(
        "/Bulk",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "DELETE", "path": f"/Users/{b_user['id']}"},
                {
                    "method": "PATCH",
                    "path": f"/Groups/{b_group['id']}",
                    "data": {
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "remove", "path": "members"}],
                    },
                },
                {"method": "PUT", "path": f"/Users/{b_user['id']}", "data": {"schemas": [USER_URN], "userName": "x"}},
            ],
        },
    )
    assert [op["status"] for op in answer.body["Operations"]] == ["404", "404", "404"]
    assert "globex" not in str(answer.body).lower()
    assert Identity.select().where(Identity.key == b_user["id"]).exists()
    assert GroupMember.select().count() == 1


def test_the_same_username_lives_in_two_orgs_without_conflict_or_leak(scim):
    scim.b.create_user("shared@example.com", title="B")
    created = scim.a.post("/Users", {"schemas": [USER_URN], "userName": "shared@example.com", "title": "A"})
    assert created.status == 201
    found = scim.a.get("/Users", query={"filter": 'userName eq "shared@example.com"'}).body
    assert [r["title"] for r in found["Resources"]] == ["A"]


def test_writes_reconcile_in_the_tokens_org_only(scim):
    scim.b.create_user("b", emails=[{"value": "b@globex.com"}])
    scim.a.create_user("a", emails=[{"value": "a@acme.com"}])
    orgs = {org_id for org_id, _, _ in scim.reconciliations.calls}
    assert orgs == {scim.org_a.id, scim.org_b.id}
    scim.reconciliations.clear()
    scim.a.create_user("only.a", emails=[{"value": "only.a@acme.com"}])
    assert [(org_id, actor.startswith("token:")) for org_id, _, actor in scim.reconciliations.calls] == [
        (scim.org_a.id, True)
    ]
