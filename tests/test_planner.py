"""The pure planner: rules, precedence, lifecycle and the last-owner rule, on plain data (no store, no clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.domain.reconcile import Current, CurrentMember, MemberState
from tests.planning import NOW, POLICY, Rule, advance, empty, group, observed, person, plan

RULES = [
    Rule(group="Staff", role="member"),
    Rule(group="Engineering", team="Engineering", team_role="member", parent="Product"),
    Rule(group="IT Admins", role="admin"),
    Rule(group_glob="Eng-*", team="Engineering", team_role="maintainer"),
    Rule(attribute={"department": "Finance"}, team="finance"),
    Rule(group_id="ext-owners", role="owner"),
]


def test_new_person_joins_with_role_and_teams_and_every_action_has_a_reason():
    obs = observed([person("alice@acme.com", "it", "eng")], [group("it", "IT Admins"), group("eng", "Engineering")])
    result = plan(obs, RULES)
    kinds = [a.action for a in result.actions]
    assert kinds == ["team.create", "team.create", "member.join"]
    join = result.actions[-1]
    assert join.after["role"] == "admin"
    assert join.after["teams"] == [{"team": "engineering", "role": "member"}]
    assert "group 'IT Admins', rule 3" in join.reason
    assert all(a.reason for a in result.actions)
    assert result.actions[0].after == {"slug": "product", "name": "product", "parent": None}
    assert result.actions[1].after["parent"] == "product"


def test_role_change_line_names_who_what_and_which_rule():
    obs = observed([person("alice@acme.com", "staff")], [group("staff", "Staff"), group("it", "IT Admins")])
    current = advance(empty(), plan(obs, RULES))
    promoted = observed([person("alice@acme.com", "staff", "it")], obs.groups)
    (action,) = plan(promoted, RULES, current).actions
    assert action.line() == "alice@acme.com: member -> admin (group 'IT Admins', rule 3)"
    assert action.before["role"] == "member" and action.after["role"] == "admin"


def test_highest_role_wins_across_rules_and_sources():
    obs = observed(
        [person("bob@acme.com", "staff"), person("bob@acme.com", "owners", source="scim:acme")],
        [group("staff", "Staff"), group("owners", "Owners", source="scim:acme", external_id="ext-owners")],
    )
    (join,) = plan(obs, RULES).actions
    assert join.after["role"] == "owner"
    assert "rule 6" in join.reason


def test_attributes_come_from_the_highest_precedence_source():
    low = replace(person("carol@acme.com", source="scim:acme"), display_name="Carol (IdP)")
    high = replace(person("carol@acme.com"), display_name="Carol Danvers")
    (join,) = plan(observed([low, high]), RULES).actions
    assert join.after["display_name"] == "Carol Danvers"
    flipped = observed([low, high], precedence={"hr": 0, "scim:acme": 10})
    assert plan(flipped, RULES).actions[0].after["display_name"] == "Carol (IdP)"


def test_email_outside_org_domains_is_a_guest_unless_a_rule_grants_a_role():
    obs = observed([person("dan@partner.io"), person("erin@partner.io", "it")], [group("it", "IT Admins")])
    roles = {a.after["email"]: (a.after["role"], a.reason) for a in plan(obs, RULES).actions}
    assert roles["dan@partner.io"][0] == "guest"
    assert "partner.io is outside" in roles["dan@partner.io"][1]
    assert roles["erin@partner.io"][0] == "admin"


def test_attribute_rule_and_source_limited_rule():
    rules = [*RULES, Rule(group="Staff", source="scim:acme", role="admin")]
    obs = observed([person("fay@acme.com", "staff", department="finance")], [group("staff", "Staff")])
    (*_, join) = plan(obs, rules).actions
    assert join.after["role"] == "member"
    assert join.after["teams"] == [{"team": "finance", "role": "member"}]


def test_nested_groups_grant_through_their_parents():
    groups = [group("it", "IT Admins", "helpdesk"), group("helpdesk", "Helpdesk", "tier1"), group("tier1", "Tier 1")]
    (join,) = plan(observed([person("gus@acme.com", "tier1")], groups), RULES).actions
    assert join.after["role"] == "admin"
    assert "group 'IT Admins' via 'Tier 1', rule 3" in join.reason


def test_nested_group_cycle_is_reported_and_still_flattened():
    groups = [group("a", "IT Admins", "b"), group("b", "Loop B", "c"), group("c", "Loop C", "a")]
    result = plan(observed([person("hal@acme.com", "c")], groups), RULES)
    assert result.actions[-1].after["role"] == "admin"
    assert len(result.notes) == 1 and "contain each other" in result.notes[0]


def test_team_maintainer_beats_member_for_the_same_team():
    groups = [group("eng", "Engineering"), group("eng-core", "Eng-Core")]
    (*_, join) = plan(observed([person("ivy@acme.com", "eng", "eng-core")], groups), RULES).actions
    assert join.after["teams"] == [{"team": "engineering", "role": "maintainer"}]


def test_pinned_role_beats_rules():
    obs = observed([person("jo@acme.com", "it")], [group("it", "IT Admins")])
    current = advance(empty(), plan(obs, RULES))
    member = current.members["jo@acme.com"]
    pinned = Current(
        {"jo@acme.com": replace(member, state=replace(member.state, role="member", pinned=True))}, current.teams, 0
    )
    assert plan(obs, RULES, pinned).actions == ()


def test_absent_person_is_suspended_then_deprovisioned_after_grace_then_reactivated():
    obs = observed([person("kim@acme.com", "staff")], [group("staff", "Staff")])
    current = advance(empty(), plan(obs, RULES))
    gone = observed([], obs.groups)
    (suspend,) = plan(gone, RULES, current).actions
    assert suspend.action == "member.suspend" and suspend.reason == "no source asserts them any more"
    current = advance(current, plan(gone, RULES, current))
    assert plan(gone, RULES, current, now=NOW + timedelta(days=29)).actions == ()
    (deprovision,) = plan(gone, RULES, current, now=NOW + timedelta(days=30)).actions
    assert deprovision.action == "member.deprovision"
    assert deprovision.details == {"transfer_to": "it@acme.com"}
    current = advance(current, plan(gone, RULES, current, now=NOW + timedelta(days=30)))
    (back,) = plan(obs, RULES, current).actions
    assert back.action == "member.reactivate" and back.after["status"] == "active"


def test_disabled_in_every_asserting_source_suspends():
    obs = observed([person("lee@acme.com")])
    current = advance(empty(), plan(obs, RULES))
    disabled = observed(
        [person("lee@acme.com", active=False), person("lee@acme.com", source="scim:acme", active=False)]
    )
    (action,) = plan(disabled, RULES, current).actions
    assert action.action == "member.suspend" and "disabled in source hr, scim:acme" in action.reason
    one_still_active = observed([person("lee@acme.com", active=False), person("lee@acme.com", source="scim:acme")])
    assert plan(one_still_active, RULES, current).actions == ()


def test_last_owner_is_never_demoted_or_suspended():
    owner = CurrentMember("boss@acme.com", MemberState("boss@acme.com", "boss", "Boss", "active", "owner"))
    current = Current({"boss@acme.com": owner}, {}, active_owners=1)
    result = plan(observed([]), RULES, current)
    assert result.actions == ()
    assert any("last owner" in note for note in result.notes)
    demoted = plan(observed([person("boss@acme.com")]), RULES, current)
    assert all(a.action != "member.role" for a in demoted.actions)


def test_one_of_two_owners_may_go_but_not_both():
    owners = {
        key: CurrentMember(key, MemberState(key, key, key, "active", "owner")) for key in ("a@acme.com", "b@acme.com")
    }
    result = plan(observed([]), RULES, Current(owners, {}, active_owners=2))
    assert [a.action for a in result.actions] == ["member.suspend"]


def test_disabled_identity_of_a_new_person_creates_no_member():
    assert plan(observed([person("ned@acme.com", active=False)]), RULES).actions == ()


EMAILS = st.sampled_from(["a@acme.com", "b@acme.com", "c@partner.io", "d@acme.com", "e@acme.com"])
GROUP_KEYS = st.sampled_from(["staff", "eng", "it", "eng-x", "owners"])
IDENTITY = st.builds(
    lambda email, groups, source, active, dept: person(email, *groups, source=source, active=active, department=dept),
    EMAILS,
    st.lists(GROUP_KEYS, max_size=3),
    st.sampled_from(["hr", "scim:acme"]),
    st.booleans(),
    st.sampled_from(["Finance", "IT"]),
)
GROUPS = [
    group("staff", "Staff"),
    group("eng", "Engineering", "eng-x"),
    group("eng-x", "Eng-X", "eng"),
    group("it", "IT Admins"),
    group("owners", "Owners", external_id="ext-owners"),
]


@settings(max_examples=150, deadline=None)
@given(first=st.lists(IDENTITY, max_size=8), second=st.lists(IDENTITY, max_size=8), days=st.integers(0, 60))
def test_reconciling_the_same_input_twice_is_a_no_op(first, second, days):
    current = advance(empty(), plan(observed(first, GROUPS), RULES))
    later = NOW + timedelta(days=days)
    once = plan(observed(second, GROUPS), RULES, current, now=later)
    after = advance(current, once, now=later)
    again = plan(observed(second, GROUPS), RULES, after, now=later)
    assert again.actions == (), [a.line() for a in again.actions]
    for action in once.actions:
        assert action.reason
    assert sum(1 for m in after.members.values() if m.state.status == "active" and m.state.role == "owner") >= min(
        1, current.active_owners
    )


def test_policy_default_role_applies_inside_the_domains():
    (join,) = plan(observed([person("olga@acme.com")]), [], policy=replace(POLICY, default_role="guest")).actions
    assert join.after["role"] == "guest" and join.reason.endswith("role: default role")
