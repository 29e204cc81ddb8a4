"""Every request shape Microsoft Entra ID and Okta document, replayed against the endpoint.

Sources: Microsoft Learn, "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft Entra ID" (the
request/response examples) and "Known issues and resolutions with SCIM 2.0 protocol compliance of the Microsoft
Entra user provisioning service" (default behaviour and the ``aadOptscim062020`` flag); Okta Developer, "SCIM 2.0
protocol reference" / "Build a SCIM provisioning integration" (create, PUT of the full object, group PATCH).
"""

from __future__ import annotations

import uuid

ENTRA_GROUP_URN = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"


def entra_user(suffix: str = "ab6490ee-1e48-479e-a20b-2d77186b5dd1") -> dict:
    return {
        "schemas": [USER_URN, ENTERPRISE],
        "externalId": f"ext-{suffix}",
        "userName": f"Test_User_{suffix}",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": f"Test_User_{suffix[:8]}@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
    }


def test_entra_test_connection_filter_on_a_random_guid_gets_an_empty_list(scim):
    answer = scim.a.get("/Users", query={"filter": f'userName eq "{uuid.uuid4()}"'})
    assert answer.status == 200
    assert answer.body["totalResults"] == 0 and answer.body["Resources"] == []


def test_entra_create_user_then_lookups_by_username_and_external_id(scim):
    created = scim.a.post("/Users", entra_user())
    assert created.status == 201
    assert created.headers["Location"].endswith(f"/scim/v2/Users/{created.body['id']}")
    by_name = scim.a.get("/Users", query={"filter": 'userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"'})
    by_external = scim.a.get("/Users", query={"filter": 'externalId eq "ext-ab6490ee-1e48-479e-a20b-2d77186b5dd1"'})
    assert [r["id"] for r in by_name.body["Resources"]] == [created.body["id"]]
    assert [r["id"] for r in by_external.body["Resources"]] == [created.body["id"]]


def test_entra_default_patch_with_capitalised_ops_and_string_false_is_accepted(scim):
    user = scim.a.post("/Users", entra_user()).body
    answer = scim.a.patch(
        f"/Users/{user['id']}",
        [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "nickName", "value": "Babs"},
        ],
    )
    assert answer.status in (200, 204)
    after = scim.a.get(f"/Users/{user['id']}").body
    assert after["active"] is False and after["nickName"] == "Babs"


def test_entra_multi_valued_replace_on_a_filtered_path_and_single_valued_replace(scim):
    user = scim.a.post("/Users", entra_user()).body
    answer = scim.a.patch(
        f"/Users/{user['id']}",
        [
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Replace", "path": "userName", "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"},
        ],
    )
    assert answer.status in (200, 204)
    after = scim.a.get(f"/Users/{user['id']}").body
    assert after["emails"] == [{"primary": True, "type": "work", "value": "updatedEmail@microsoft.com"}]
    assert after["name"]["familyName"] == "updatedFamilyName"
    found = scim.a.get("/Users", query={"filter": 'userName eq "5B50642D-79fc-4410-9e90-4c077cdd1a59@testuser.com"'})
    assert found.body["totalResults"] == 1


def test_entra_add_on_a_filtered_path_with_no_match_creates_the_entry(scim):
    user = scim.a.post("/Users", entra_user()).body
    answer = scim.a.patch(
        f"/Users/{user['id']}", [{"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"}]
    )
    assert answer.status in (200, 204)
    assert scim.a.get(f"/Users/{user['id']}").body["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0100"}]


def test_entra_flagged_pathless_replace_with_dotted_and_urn_keys(scim):
    user = scim.a.post("/Users", entra_user()).body
    answer = scim.a.patch(
        f"/Users/{user['id']}",
        [
            {
                "op": "replace",
                "value": {
                    "active": False,
                    "displayName": "Babs Jensen",
                    "name.givenName": "Barbara",
                    f"{ENTERPRISE}:department": "Tour Operations",
                },
            }
        ],
        query={"aadOptscim062020": ""},
    )
    assert answer.status in (200, 204)
    after = scim.a.get(f"/Users/{user['id']}").body
    assert after["active"] is False and after["displayName"] == "Babs Jensen"
    assert after["name"]["givenName"] == "Barbara"
    assert after[ENTERPRISE]["department"] == "Tour Operations"
    found = scim.a.get("/Users", query={"filter": f'{ENTERPRISE}:department eq "tour operations"'})
    assert found.body["totalResults"] == 1


def test_entra_manager_as_bare_id_as_value_object_and_with_path_manager(scim):
    boss = scim.a.post("/Users", entra_user("11111111-aaaa")).body
    other = scim.a.post("/Users", entra_user("22222222-bbbb")).body
    user = scim.a.post("/Users", entra_user("33333333-cccc")).body
    default_form = scim.a.patch(
        f"/Users/{user['id']}", [{"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss["id"]}]
    )
    assert default_form.status in (200, 204)
    assert scim.a.get(f"/Users/{user['id']}").body[ENTERPRISE]["manager"]["value"] == boss["id"]
    flagged_form = scim.a.patch(
        f"/Users/{user['id']}", [{"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": other["id"]}}]
    )
    assert flagged_form.status in (200, 204)
    assert scim.a.get(f"/Users/{user['id']}").body[ENTERPRISE]["manager"]["value"] == other["id"]
    short_path = scim.a.patch(f"/Users/{user['id']}", [{"op": "Replace", "path": "manager", "value": boss["id"]}])
    assert short_path.status in (200, 204)
    assert scim.a.get(f"/Users/{user['id']}").body[ENTERPRISE]["manager"]["value"] == boss["id"]
    created_with_manager = scim.a.post(
        "/Users", {**entra_user("44444444-dddd"), ENTERPRISE: {"manager": {"value": boss["id"]}}}
    )
    assert created_with_manager.status == 201


def test_entra_filter_on_id_and_unqualified_manager(scim):
    boss = scim.a.post("/Users", entra_user("11111111-aaaa")).body
    user = scim.a.post("/Users", {**entra_user("33333333-cccc"), ENTERPRISE: {"manager": {"value": boss["id"]}}}).body
    hit = scim.a.get("/Users", query={"filter": f'id eq "{user["id"]}" and manager eq "{boss["id"]}"'})
    miss = scim.a.get("/Users", query={"filter": f'id eq "{user["id"]}" and manager eq "{user["id"]}"'})
    assert [r["id"] for r in hit.body["Resources"]] == [user["id"]]
    assert miss.body["totalResults"] == 0


def test_entra_group_create_with_microsoft_schema_urn_and_get_without_members(scim):
    user = scim.a.post("/Users", entra_user()).body
    group = scim.a.post(
        "/Groups",
        {
            "schemas": [GROUP_URN, ENTRA_GROUP_URN],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
    )
    assert group.status == 201
    gid = group.body["id"]
    added = scim.a.patch(
        f"/Groups/{gid}", [{"op": "Add", "path": "members", "value": [{"$ref": None, "value": user["id"]}]}]
    )
    assert added.status in (200, 204)
    fetched = scim.a.get(f"/Groups/{gid}", query={"excludedAttributes": "members"})
    assert fetched.status == 200 and "members" not in fetched.body
    by_name = scim.a.get("/Groups", query={"filter": 'displayName eq "displayName"', "excludedAttributes": "members"})
    assert [g["id"] for g in by_name.body["Resources"]] == [gid]
    assert "members" not in by_name.body["Resources"][0]


def test_entra_remove_members_by_value_list_removes_only_those_listed(scim):
    users = [scim.a.post("/Users", entra_user(f"{i:08d}-eeee")).body["id"] for i in range(4)]
    group = scim.a.create_group("Sales", users)
    answer = scim.a.patch(
        f"/Groups/{group['id']}",
        [{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": users[0]}, {"value": users[2]}]}],
    )
    assert answer.status in (200, 204)
    left = sorted(m["value"] for m in scim.a.get(f"/Groups/{group['id']}").body["members"])
    assert left == sorted([users[1], users[3]])


def test_entra_flagged_remove_member_by_value_filter(scim):
    users = [scim.a.post("/Users", entra_user(f"{i:08d}-ffff")).body["id"] for i in range(3)]
    group = scim.a.create_group("Ops", users)
    answer = scim.a.patch(f"/Groups/{group['id']}", [{"op": "remove", "path": f'members[value eq "{users[1]}"]'}])
    assert answer.status in (200, 204)
    left = sorted(m["value"] for m in scim.a.get(f"/Groups/{group['id']}").body["members"])
    assert left == sorted([users[0], users[2]])


def test_entra_group_rename_and_delete(scim):
    group = scim.a.create_group("Old name")
    renamed = scim.a.patch(f"/Groups/{group['id']}", [{"op": "Replace", "path": "displayName", "value": "New name"}])
    assert renamed.status in (200, 204)
    assert scim.a.get(f"/Groups/{group['id']}").body["displayName"] == "New name"
    assert scim.a.delete(f"/Groups/{group['id']}").status == 204
    assert scim.a.get(f"/Groups/{group['id']}").status == 404


def okta_user() -> dict:
    return {
        "schemas": [USER_URN],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }


def test_okta_lookup_with_paging_parameters_then_create_with_password(scim):
    empty = scim.a.get(
        "/Users", query={"filter": 'userName eq "test.user@okta.local"', "startIndex": "1", "count": "100"}
    )
    assert empty.body["totalResults"] == 0
    created = scim.a.post("/Users", okta_user())
    assert created.status == 201, created.body
    assert "password" not in created.body
    found = scim.a.get(
        "/Users", query={"filter": 'userName eq "test.user@okta.local"', "startIndex": "1", "count": "100"}
    )
    assert found.body["totalResults"] == 1


def test_okta_put_of_the_full_object_read_back_with_id_meta_groups_and_password(scim):
    created = scim.a.post("/Users", okta_user()).body
    group = scim.a.create_group("Okta Group", [created["id"]])
    read_back = scim.a.get(f"/Users/{created['id']}").body
    assert read_back["groups"][0]["value"] == group["id"]
    replacement = {**read_back, "password": "newPassw0rd", "name": {"givenName": "Another", "familyName": "User"}}
    answer = scim.a.put(f"/Users/{created['id']}", replacement)
    assert answer.status == 200, answer.body
    assert answer.body["name"]["givenName"] == "Another" and "password" not in answer.body
    assert answer.body["groups"][0]["value"] == group["id"]


def test_okta_deactivate_with_pathless_replace(scim):
    created = scim.a.post("/Users", okta_user()).body
    answer = scim.a.patch(f"/Users/{created['id']}", [{"op": "replace", "value": {"active": False}}])
    assert answer.status in (200, 204)
    assert scim.a.get(f"/Users/{created['id']}").body["active"] is False


def test_okta_group_pathless_replace_carrying_id(scim):
    group = scim.a.create_group("Test SCIMv2")
    answer = scim.a.patch(
        f"/Groups/{group['id']}",
        [{"op": "replace", "value": {"id": group["id"], "displayName": "Test SCIMv2 renamed"}}],
    )
    assert answer.status in (200, 204), answer.body
    assert scim.a.get(f"/Groups/{group['id']}").body["displayName"] == "Test SCIMv2 renamed"


def test_okta_remove_and_add_members_in_one_patch(scim):
    users = [scim.a.create_user(f"okta{i}@okta.local")["id"] for i in range(3)]
    group = scim.a.create_group("Okta Members", users[:2])
    answer = scim.a.patch(
        f"/Groups/{group['id']}",
        [
            {"op": "remove", "path": f'members[value eq "{users[0]}"]'},
            {"op": "add", "path": "members", "value": [{"value": users[2], "display": "okta2@okta.local"}]},
        ],
    )
    assert answer.status in (200, 204)
    left = sorted(m["value"] for m in scim.a.get(f"/Groups/{group['id']}").body["members"])
    assert left == sorted(users[1:])


def test_okta_replace_members_as_a_full_push(scim):
    users = [scim.a.create_user(f"push{i}@okta.local")["id"] for i in range(4)]
    group = scim.a.create_group("Pushed", users[:3])
    answer = scim.a.patch(
        f"/Groups/{group['id']}",
        [{"op": "replace", "path": "members", "value": [{"value": users[2]}, {"value": users[3]}]}],
    )
    assert answer.status in (200, 204)
    left = sorted(m["value"] for m in scim.a.get(f"/Groups/{group['id']}").body["members"])
    assert left == sorted(users[2:])
