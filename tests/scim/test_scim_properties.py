"""Property tests: filters compiled to SQL agree with scim2-models' own evaluation, arbitrary filter strings never
answer 500, and PATCH through the endpoint (fast path included) gives what scim2-models gives in memory."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scim2_models import Context, Group, PatchOp, SCIMException, ScimFilter, User

from scim.schema import TOLERANT_POLICY, EnterpriseUser

MODEL = User[EnterpriseUser]
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

PEOPLE: list[dict[str, Any]] = [
    {
        "userName": "alice",
        "displayName": "Alice Émile",
        "title": "Engineer",
        "active": True,
        "nickName": "Al",
        "emails": [
            {"value": "alice@acme.com", "type": "work", "primary": True},
            {"value": "al@home.org", "type": "home"},
        ],
        "name": {"givenName": "Alice", "familyName": "Zeta"},
        ENTERPRISE: {"department": "R&D", "employeeNumber": "7"},
    },
    {
        "userName": "Bob",
        "displayName": "bob",
        "active": False,
        "externalId": "B-1",
        "emails": [{"value": "bob@acme.com", "type": "work"}],
        "name": {"givenName": "Bob"},
    },
    {
        "userName": "carol.o'neil",
        "title": "engineer",
        "nickName": "C%_",
        "emails": [{"value": "carol@example.org", "type": "home", "primary": False}],
        ENTERPRISE: {"department": "Sales"},
    },
    {
        "userName": "dave",
        "externalId": "b-1",
        "displayName": 'DAVE "D"',
        "title": "Manager",
        "name": {"familyName": "Émile"},
    },
    {"userName": "élodie", "displayName": "Élodie", "active": True, "title": "", "emails": []},
    {"userName": "zed", "nickName": "zed", "emails": [{"value": "zed@acme.com", "primary": True}]},
]

STRING_ATTRIBUTES = [
    "userName",
    "displayName",
    "title",
    "nickName",
    "externalId",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.type",
    f"{ENTERPRISE}:department",
    f"{ENTERPRISE}:employeeNumber",
    "id",
]
WORDS = [
    "alice",
    "ALICE",
    "bob",
    "b-1",
    "B-1",
    "acme",
    "@",
    "work",
    "home",
    "Émile",
    "émile",
    "engineer",
    "R&D",
    "e",
    "",
    "'",
    '"',
    "%",
    "_",
    "z",
    "Manager",
    "sales",
    "élodie",
    "Élodie",
    "7",
]


def quoted(text: str) -> str:
    return ScimFilter.quote(text)


@st.composite
def comparisons(draw: Any) -> str:
    attribute = draw(st.sampled_from(STRING_ATTRIBUTES))
    kind = draw(st.sampled_from(["cmp", "cmp", "cmp", "pr", "bool"]))
    if kind == "pr":
        return f"{attribute} pr"
    if kind == "bool":
        return f"{draw(st.sampled_from(['active', 'emails.primary']))} {draw(st.sampled_from(['eq', 'ne']))} " + draw(
            st.sampled_from(["true", "false"])
        )
    op = draw(st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]))
    value = draw(st.one_of(st.sampled_from(WORDS), st.text(alphabet="abeilozAE@.-'% É", max_size=4)))
    return f"{attribute} {op} {quoted(value)}"


@st.composite
def value_paths(draw: Any) -> str:
    inner = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["type", "value", "primary"]),
                st.sampled_from(["eq", "ne", "co", "sw"]),
                st.sampled_from(["work", "home", "acme", "@", "true"]),
            ),
            min_size=1,
            max_size=2,
        )
    )
    terms = []
    for attribute, op, value in inner:
        if attribute == "primary":
            terms.append(f"primary {'eq' if op == 'eq' else 'ne'} {'true' if value == 'true' else 'false'}")
        else:
            terms.append(f"{attribute} {op} {quoted(value)}")
    joiner = draw(st.sampled_from([" and ", " or "]))
    return f"emails[{joiner.join(terms)}]"


filters = st.recursive(
    st.one_of(comparisons(), value_paths()),
    lambda children: st.one_of(
        st.tuples(children, st.sampled_from(["and", "or"]), children).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        children.map(lambda f: f"not ({f})"),
        children.map(lambda f: f"({f})"),
    ),
    max_leaves=4,
)


@pytest.fixture
def people(scim) -> dict[str, Any]:
    stored = {}
    for person in PEOPLE:
        created = scim.a.post(
            "/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE], **person}
        )
        assert created.status == 201, created.body
        stored[created.body["id"]] = MODEL.model_validate(created.body)
    return stored


@SETTINGS
@given(expression=filters)
def test_sql_filters_select_what_scim2_models_matches(scim, people, expression):
    try:
        bound = ScimFilter[MODEL](expression)
        expected = {uid for uid, user in people.items() if bound.match(user)}
    except SCIMException:
        expected = None
    answer = scim.a.get("/Users", query={"filter": expression, "count": "1000"})
    if expected is None:
        assert answer.status == 400, (expression, answer.body)
        return
    assert answer.status == 200, (expression, answer.body)
    assert {r["id"] for r in answer.body["Resources"]} == expected, expression
    assert answer.body["totalResults"] == len(expected)


@SETTINGS
@given(expression=st.text(max_size=60))
def test_arbitrary_filter_strings_never_answer_500(scim, expression):
    answer = scim.a.get("/Users", query={"filter": expression})
    assert answer.status in (200, 400), (expression, answer.body)


FILTER_PIECES = [
    "userName",
    "members",
    "emails",
    "displayName",
    "value",
    " eq ",
    " co ",
    " gt ",
    " pr",
    " and ",
    " or ",
    "not ",
    "(",
    ")",
    "[",
    "]",
    ".",
    '"',
    '"x"',
    "'",
    "\\",
    "\\u0000",
    "\x00",
    "%",
    "_",
    "true",
    "null",
    "1",
    "urn:x:",
    " ",
]


@SETTINGS
@given(expression=st.lists(st.sampled_from(FILTER_PIECES), max_size=12).map("".join))
def test_filter_like_strings_never_answer_500(scim, expression):
    answer = scim.a.get("/Groups", query={"filter": expression})
    assert answer.status in (200, 400), (expression, answer.body)


USER_PATHS = [
    "displayName",
    "title",
    "nickName",
    "name.givenName",
    "emails",
    'emails[type eq "work"].value',
    f"{ENTERPRISE}:department",
    "active",
    "phoneNumbers",
    None,
]


@st.composite
def user_operations(draw: Any) -> dict[str, Any]:
    op = draw(st.sampled_from(["add", "replace", "remove", "Add", "Replace"]))
    path = draw(st.sampled_from(USER_PATHS))
    if op.lower() == "remove":
        return {"op": op, "path": path or "title"}
    if path is None:
        value: Any = {"displayName": draw(st.sampled_from(["X", "Y"])), "active": draw(st.booleans())}
    elif path in ("emails", "phoneNumbers"):
        value = [
            {
                "value": draw(st.sampled_from(["a@b.co", "c@d.co", "+1 555"])),
                "type": draw(st.sampled_from(["work", "home"])),
            }
        ]
    elif path == "active":
        value = draw(st.sampled_from([True, False, "False", "True"]))
    else:
        value = draw(st.sampled_from(["v1", "V2", "", "w@x.co"]))
    return {"op": op, "path": path, "value": value} if path else {"op": op, "value": value}


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("meta", "groups")}


@SETTINGS
@given(operations=st.lists(user_operations(), min_size=1, max_size=3))
def test_user_patch_through_the_endpoint_equals_scim2_models_in_memory(scim, operations):
    created = scim.a.create_user(
        "patched", title="T", emails=[{"value": "p@acme.com", "type": "work"}], displayName="P"
    )
    before = MODEL.model_validate(scim.a.get(f"/Users/{created['id']}").body)
    try:
        with TOLERANT_POLICY:
            patch = PatchOp[MODEL].model_validate(
                {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
            expected = before.model_copy(deep=True)
            patch.patch(expected)
        expected_body = comparable(expected.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
        failure = None
    except SCIMException as error:
        failure = error.status
    answer = scim.a.patch(f"/Users/{created['id']}", operations)
    after = scim.a.get(f"/Users/{created['id']}").body
    if failure is not None:
        assert answer.status == failure, (operations, answer.body)
        assert comparable(after) == comparable(before.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    else:
        assert answer.status == 200, (operations, answer.body)
        assert comparable(after) == expected_body, operations
        assert comparable(answer.body) == comparable(after), operations  # RFC 7644 §3.5.2: the resource as stored
    scim.a.delete(f"/Users/{created['id']}")


@pytest.fixture
def six_users(scim) -> list[str]:
    return [scim.a.create_user(f"member{i}")["id"] for i in range(6)]


@SETTINGS
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["add", "remove_list", "remove_filter", "replace", "clear"]), st.sets(st.integers(0, 5))
        ),
        min_size=1,
        max_size=4,
    )
)
def test_member_patches_give_the_set_semantics_of_rfc_7644(scim, six_users, steps):
    users = six_users
    group = scim.a.create_group("Property", users[:3])
    expected = set(users[:3])
    operations = []
    for action, picks in steps:
        chosen = [users[i] for i in sorted(picks)]
        if action == "add" and chosen:
            operations.append({"op": "add", "path": "members", "value": [{"value": u} for u in chosen]})
            expected |= set(chosen)
        elif action == "remove_list" and chosen:
            operations.append({"op": "Remove", "path": "members", "value": [{"value": u} for u in chosen]})
            expected -= set(chosen)
        elif action == "remove_filter" and chosen:
            selection = " or ".join(f'value eq "{u}"' for u in chosen)
            operations.append({"op": "remove", "path": f"members[{selection}]"})
            expected -= set(chosen)
        elif action == "replace":
            operations.append({"op": "replace", "path": "members", "value": [{"value": u} for u in chosen]})
            expected = set(chosen)
        elif action == "clear":
            operations.append({"op": "remove", "path": "members"})
            expected = set()
    if operations:
        answer = scim.a.patch(f"/Groups/{group['id']}", operations)
        assert answer.status == 204, (operations, answer.body)
    body = scim.a.get(f"/Groups/{group['id']}").body
    assert {m["value"] for m in body.get("members", [])} == expected
    assert Group.model_validate(body).display_name == "Property"
    scim.a.delete(f"/Groups/{group['id']}")
