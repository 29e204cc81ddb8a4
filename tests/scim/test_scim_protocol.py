"""RFC 7644 behaviour of the endpoint: discovery, CRUD, ETags, uniqueness, paging, sorting, projection, Bulk, errors."""

from __future__ import annotations

import json

from syncd.store.models import DirectoryGroup, GroupMember, Identity
from tests.scim.conftest import Client, make_config

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_service_provider_config_needs_no_token_and_announces_bearer_etag_bulk_filter_sort(scim):
    answer = Client(scim.app.test_client(), "").get("/ServiceProviderConfig")
    assert answer.status == 200
    assert answer.body["etag"]["supported"] and answer.body["sort"]["supported"]
    assert answer.body["filter"] == {"supported": True, "maxResults": 1000}
    assert answer.body["bulk"]["supported"] and answer.body["bulk"]["maxPayloadSize"] == 1_048_576
    assert answer.body["authenticationSchemes"][0]["type"] == "oauthbearertoken"


def test_resource_types_and_schemas_list_user_with_enterprise_extension_and_group(scim):
    types = scim.a.get("/ResourceTypes").body["Resources"]
    assert {t["name"] for t in types} == {"User", "Group"}
    user_type = next(t for t in types if t["name"] == "User")
    assert user_type["schemaExtensions"][0]["schema"] == "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    schemas = {s["id"] for s in scim.a.get("/Schemas").body["Resources"]}
    assert {USER_URN, "urn:ietf:params:scim:schemas:core:2.0:Group"} <= schemas


def test_missing_or_unknown_token_gets_401_with_scim_error_and_www_authenticate(scim):
    for token in ("", "syncd_unknown", "not-a-token"):
        answer = Client(scim.app.test_client(), token).get("/Users")
        assert answer.status == 401
        assert answer.body["status"] == "401"
        assert answer.body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_of_another_scope_is_refused(scim):
    answer = scim.client(scim.tokens["admin_a"]).get("/Users")
    assert answer.status == 403
    assert "scim" in answer.body["detail"]


def test_revoked_token_gets_401(scim):
    from syncd.admin import tokens
    from syncd.store.models import Token

    token_id = Token.select().where(Token.org == scim.org_a.id, Token.scope == "scim").get().id
    tokens.revoke(token_id)
    assert scim.a.get("/Users").status == 401


def test_create_get_and_delete_a_user_with_password_never_stored(scim):
    created = scim.a.create_user("bjensen", password="t1meMa$heen", displayName="Babs")
    assert "password" not in created
    row = Identity.get(Identity.key == created["id"])
    assert "t1meMa$heen" not in row.resource and "password" not in json.loads(row.resource)
    fetched = scim.a.get(f"/Users/{created['id']}")
    assert fetched.status == 200 and fetched.body["displayName"] == "Babs"
    assert fetched.headers["ETag"] == 'W/"1"'
    assert scim.a.delete(f"/Users/{created['id']}").status == 204
    assert scim.a.get(f"/Users/{created['id']}").status == 404


def test_username_is_unique_per_org_case_insensitively_with_409(scim):
    scim.a.create_user("BJensen")
    again = scim.a.post("/Users", {"schemas": [USER_URN], "userName": "bjensen"})
    assert again.status == 409 and again.body["scimType"] == "uniqueness"
    assert scim.b.post("/Users", {"schemas": [USER_URN], "userName": "bjensen"}).status == 201


def test_renaming_a_user_onto_a_taken_username_is_409_and_changes_nothing(scim):
    scim.a.create_user("taken")
    other = scim.a.create_user("other")
    answer = scim.a.patch(f"/Users/{other['id']}", [{"op": "replace", "path": "userName", "value": "TAKEN"}])
    assert answer.status == 409
    assert scim.a.get(f"/Users/{other['id']}").body["userName"] == "other"


def test_group_display_name_is_unique_per_org(scim):
    scim.a.create_group("Engineering")
    again = scim.a.post(
        "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "engineering"}
    )
    assert again.status == 409 and again.body["scimType"] == "uniqueness"
    scim.b.create_group("Engineering")


def test_if_match_with_a_stale_etag_is_412_and_the_current_etag_succeeds(scim):
    user = scim.a.create_user("etag")
    stale = 'W/"1"'
    assert scim.a.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "title", "value": "A"}]).status == 200
    refused = scim.a.patch(
        f"/Users/{user['id']}", [{"op": "replace", "path": "title", "value": "B"}], headers={"If-Match": stale}
    )
    assert refused.status == 412
    current = scim.a.get(f"/Users/{user['id']}").headers["ETag"]
    assert current == 'W/"2"'
    accepted = scim.a.patch(
        f"/Users/{user['id']}", [{"op": "replace", "path": "title", "value": "B"}], headers={"If-Match": current}
    )
    assert accepted.status == 200 and accepted.headers["ETag"] == 'W/"3"'
    assert scim.a.delete(f"/Users/{user['id']}", headers={"If-Match": current}).status == 412


def test_if_none_match_with_the_current_etag_is_304(scim):
    user = scim.a.create_user("cached")
    answer = scim.a.get(f"/Users/{user['id']}", headers={"If-None-Match": 'W/"1"'})
    assert answer.status == 304
    assert scim.a.get(f"/Users/{user['id']}", headers={"If-None-Match": 'W/"0"'}).status == 200


def test_put_replaces_the_user_and_moves_the_version(scim):
    user = scim.a.create_user("putme", title="Old", nickName="N")
    answer = scim.a.put(f"/Users/{user['id']}", {"schemas": [USER_URN], "userName": "putme", "title": "New"})
    assert answer.status == 200
    assert answer.body["title"] == "New" and "nickName" not in answer.body
    assert answer.headers["ETag"] == 'W/"2"'


def test_paging_is_stable_and_covers_every_user_once(scim):
    ids = {scim.a.create_user(f"user{i:02d}")["id"] for i in range(23)}
    seen: list[str] = []
    start = 1
    while True:
        page = scim.a.get("/Users", query={"startIndex": str(start), "count": "5"}).body
        assert page["totalResults"] == 23
        seen += [r["id"] for r in page["Resources"]]
        if not page["Resources"]:
            break
        start += len(page["Resources"])
    assert len(seen) == 23 and set(seen) == ids


def test_sort_by_username_ascending_and_descending(scim):
    for name in ("charlie", "Alice", "bob"):
        scim.a.create_user(name)
    ascending = scim.a.get("/Users", query={"sortBy": "userName"}).body["Resources"]
    descending = scim.a.get("/Users", query={"sortBy": "userName", "sortOrder": "descending"}).body["Resources"]
    assert [r["userName"] for r in ascending] == ["Alice", "bob", "charlie"]
    assert [r["userName"] for r in descending] == ["charlie", "bob", "Alice"]


def test_sort_by_an_attribute_some_users_lack_puts_them_last(scim):
    scim.a.create_user("a", title="Zeta")
    scim.a.create_user("b")
    scim.a.create_user("c", title="alpha")
    names = [r["userName"] for r in scim.a.get("/Users", query={"sortBy": "title"}).body["Resources"]]
    assert names == ["c", "a", "b"]


def test_sort_by_a_multi_valued_attribute_orders_by_its_first_value(scim):
    """``sortBy=emails.value`` reads the first email out of the stored JSON (syncd.store.dialect's JSON path with
    an array position, alike on SQLite and PostgreSQL); case folds, users without one come last."""
    scim.a.create_user("a", emails=[{"value": "Zed@acme.com"}, {"value": "aaa@acme.com"}])
    scim.a.create_user("b")
    scim.a.create_user("c", emails=[{"value": "bob@acme.com"}])
    scim.a.create_user("d", emails=[{"value": "Carol@acme.com"}])
    names = [r["userName"] for r in scim.a.get("/Users", query={"sortBy": "emails.value"}).body["Resources"]]
    assert names == ["c", "d", "a", "b"]
    query = {"sortBy": "emails.value", "sortOrder": "descending"}
    assert [r["userName"] for r in scim.a.get("/Users", query=query).body["Resources"]] == ["b", "a", "d", "c"]


def test_attributes_and_excluded_attributes_project_the_response(scim):
    scim.a.create_user("proj", title="T", displayName="D")
    only = scim.a.get("/Users", query={"attributes": "userName"}).body["Resources"][0]
    assert set(only) <= {"schemas", "id", "userName"} and only["userName"] == "proj"
    without = scim.a.get("/Users", query={"excludedAttributes": "title"}).body["Resources"][0]
    assert "title" not in without and without["displayName"] == "D"


def test_search_with_post_dot_search(scim):
    scim.a.create_user("searched")
    answer = scim.a.post(
        "/Users/.search",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName sw "sea"'},
    )
    assert answer.status == 200 and answer.body["totalResults"] == 1


def test_invalid_filters_are_400_invalid_filter_never_500(scim):
    for bad in ("userName eq", 'userName zz "x"', '(userName eq "x"', 'nosuch eq "x"', "active gt true", "]["):
        answer = scim.a.get("/Users", query={"filter": bad})
        assert answer.status == 400, (bad, answer.body)
        assert answer.body["scimType"] == "invalidFilter", (bad, answer.body)


def test_quotes_and_sql_metacharacters_in_filter_values_are_just_values(scim):
    scim.a.create_user("o'brien\"; DROP TABLE identity; --")
    for value in ["o'brien\\\"; DROP TABLE identity; --", "%", "_", "' OR 1=1 --", "\\\\"]:
        answer = scim.a.get("/Users", query={"filter": f'userName co "{value}"'})
        assert answer.status == 200
    hit = scim.a.get("/Users", query={"filter": 'userName eq "o\'brien\\"; DROP TABLE identity; --"'})
    assert hit.body["totalResults"] == 1
    assert scim.a.get("/Users", query={"filter": 'userName co "%"'}).body["totalResults"] == 0
    assert Identity.select().count() == 1


def test_malformed_json_is_400_and_writes_nothing(scim):
    answer = scim.a.request("POST", "/Users", raw=b'{"userName": "x",')
    assert answer.status == 400
    assert answer.body["scimType"] == "invalidSyntax"
    assert Identity.select().count() == 0


def test_wrong_content_type_is_415(scim):
    answer = scim.a.request("POST", "/Users", raw=b"userName=x", content_type="application/x-www-form-urlencoded")
    assert answer.status == 415
    assert Identity.select().count() == 0


def test_deeply_nested_json_is_a_400_not_a_500(scim):
    body = (
        b'{"schemas": ["' + USER_URN.encode() + b'"], "userName": "deep", "name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    )
    answer = scim.a.request("POST", "/Users", raw=body)
    assert answer.status == 400
    assert Identity.select().count() == 0


def test_unknown_attributes_are_ignored_by_the_tolerance_policy(scim):
    answer = scim.a.post("/Users", {"schemas": [USER_URN], "userName": "extra", "favouriteColour": "blue"})
    assert answer.status == 201 and "favouriteColour" not in answer.body


def test_body_over_the_configured_limit_is_413_and_writes_nothing(store, reconciliations):
    from scim import create_app
    from syncd.admin import tokens
    from syncd.sync import orgs

    org = orgs.create("small", "Small")
    _, token = tokens.create(org, "scim")
    client = Client(create_app(make_config(max_body_bytes=512)).test_client(), token)
    answer = client.post("/Users", {"schemas": [USER_URN], "userName": "big", "title": "x" * 1024})
    assert answer.status == 413 and answer.body["status"] == "413"
    assert Identity.select().count() == 0
    assert client.post("/Users", {"schemas": [USER_URN], "userName": "fits"}).status == 201


def test_bulk_resolves_bulk_ids_and_reports_each_operation(scim):
    answer = scim.a.post(
        "/Bulk",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {
                    "method": "POST",
                    "path": "/Users",
                    "bulkId": "u1",
                    "data": {"schemas": [USER_URN], "userName": "bulk1"},
                },
                {
                    "method": "POST",
                    "path": "/Groups",
                    "bulkId": "g1",
                    "data": {"displayName": "Bulk group", "members": [{"value": "bulkId:u1"}]},
                },
            ],
        },
    )
    assert answer.status == 200
    statuses = [op["status"] for op in answer.body["Operations"]]
    assert statuses == ["201", "201"]
    group_id = answer.body["Operations"][1]["location"].rsplit("/", 1)[1]
    user_id = answer.body["Operations"][0]["location"].rsplit("/", 1)[1]
    assert [m["value"] for m in scim.a.get(f"/Groups/{group_id}").body["members"]] == [user_id]


def test_bulk_fail_on_errors_stops_and_failed_operations_write_nothing(scim):
    scim.a.create_user("dup")
    answer = scim.a.post(
        "/Bulk",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "failOnErrors": 1,
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": [USER_URN], "userName": "DUP"}},
                {
                    "method": "POST",
                    "path": "/Users",
                    "bulkId": "b",
                    "data": {"schemas": [USER_URN], "userName": "never"},
                },
            ],
        },
    )
    assert answer.status == 200
    assert [op["status"] for op in answer.body["Operations"]] == ["409"]
    assert Identity.select().count() == 1


def test_bulk_over_the_body_limit_is_413(store, reconciliations):
    from scim import create_app
    from syncd.admin import tokens
    from syncd.sync import orgs

    org = orgs.create("tiny", "Tiny")
    _, token = tokens.create(org, "scim")
    client = Client(create_app(make_config(max_body_bytes=256)).test_client(), token)
    operations = [
        {"method": "POST", "path": "/Users", "bulkId": str(i), "data": {"schemas": [USER_URN], "userName": f"u{i}"}}
        for i in range(10)
    ]
    answer = client.post(
        "/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations}
    )
    assert answer.status == 413
    assert Identity.select().count() == 0


def test_a_group_member_must_be_a_user_or_group_of_the_org(scim):
    answer = scim.a.post(
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "G",
            "members": [{"value": "nope"}],
        },
    )
    assert answer.status == 400 and answer.body["scimType"] == "invalidValue"
    assert DirectoryGroup.select().count() == 0


def test_deleting_a_user_removes_its_memberships(scim):
    user = scim.a.create_user("leaver")
    group = scim.a.create_group("Team", [user["id"]])
    assert scim.a.delete(f"/Users/{user['id']}").status == 204
    assert "members" not in scim.a.get(f"/Groups/{group['id']}").body
    assert GroupMember.select().count() == 0


def test_user_groups_attribute_lists_direct_memberships(scim):
    user = scim.a.create_user("member")
    group = scim.a.create_group("Readers", [user["id"]])
    groups = scim.a.get(f"/Users/{user['id']}").body["groups"]
    assert groups[0]["value"] == group["id"] and groups[0]["display"] == "Readers"
    listed = scim.a.get("/Users", query={"filter": f'groups.value eq "{group["id"]}"'}).body
    assert [r["id"] for r in listed["Resources"]] == [user["id"]]


def test_nul_characters_in_filters_and_bodies_are_400_on_every_backend(scim):
    for expression in ('userName eq "a\\u0000b"', 'emails[value co "\\u0000"]'):
        answer = scim.a.get("/Users", query={"filter": expression})
        assert answer.status == 400 and answer.body["scimType"] == "invalidFilter"
    created = scim.a.post("/Users", {"schemas": [USER_URN], "userName": "a\u0000b"})
    assert created.status == 400
    assert scim.a.post("/Users", {"schemas": [USER_URN], "userName": "back\\u0000slash"}).status == 201
    assert Identity.select().count() == 1


def test_passwords_are_never_stored_returned_or_logged(scim, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    secret = "Pa55-w0rd-never-seen"
    created = scim.a.create_user("pw", password=secret)
    scim.a.patch(f"/Users/{created['id']}", [{"op": "replace", "path": "password", "value": secret + "2"}])
    scim.a.put(f"/Users/{created['id']}", {"schemas": [USER_URN], "userName": "pw", "password": secret + "3"})
    scim.a.post("/Users", {"schemas": [USER_URN], "userName": "PW", "password": secret + "4"})
    scim.a.post("/Users", {"schemas": [USER_URN], "userName": 5, "password": secret + "5"})
    answer = scim.a.get(f"/Users/{created['id']}")
    assert "password" not in answer.body
    stored = " ".join(row.resource for row in Identity.select())
    assert secret not in stored and secret not in caplog.text
