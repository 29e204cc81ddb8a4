"""Source runs end to end on SQLite and PostgreSQL: stage, plan, guard, apply, cursor, and their invariants."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from connectors.interface import ConnectorError, Delta, GroupRecord
from syncd.clock import utcnow
from syncd.config import Policy
from syncd.store.models import (
    DirectoryGroup,
    GroupMember,
    Identity,
    LedgerEntry,
    Member,
    OutboxEvent,
    Source,
    Team,
    TeamMember,
)
from syncd.store.models import Plan as PlanRow
from syncd.sync import ledger, pipeline
from tests.directory import Directory, declare, make_config, snapshot, user

NOW = utcnow()


@pytest.fixture
def config(store, database_url):
    return declare(make_config(database_url))


def members() -> dict[str, tuple[str, str]]:
    return {m.email: (m.status, m.role) for m in Member.select()}


def state_counts() -> tuple[int, ...]:
    return tuple(
        model.select().count()
        for model in (Identity, DirectoryGroup, GroupMember, Member, Team, TeamMember, LedgerEntry, OutboxEvent)
    )


def org_id() -> int:
    return Source.get(Source.name == "hr").org_id


def test_first_snapshot_creates_members_roles_teams_ledger_and_outbox(config):
    read = snapshot(user("alice", "IT Admins", "Engineering"), user("bob", "Staff"), user("eve", domain="gmail.com"))
    result = pipeline.apply_read(config, "hr", read, now=NOW)
    assert result.applied and not result.held
    assert members() == {
        "alice@acme.com": ("active", "admin"),
        "bob@acme.com": ("active", "member"),
        "eve@gmail.com": ("active", "guest"),
    }
    alice = Member.get(Member.email == "alice@acme.com")
    assert [(t.team.slug, t.role) for t in TeamMember.select().where(TeamMember.member == alice)] == [
        ("engineering", "member")
    ]
    joins = LedgerEntry.select().where(LedgerEntry.action == "member.join")
    assert joins.count() == 3
    entry = joins.where(LedgerEntry.target == "member:alice@acme.com").get()
    assert entry.actor == "source:hr" and "group 'IT Admins', rule 3" in entry.reason
    assert set(json.loads(entry.after)) == {"email", "user_name", "display_name", "status", "role", "pinned", "teams"}
    assert OutboxEvent.select().count() == LedgerEntry.select().count()  # every ledgered change has an event
    assert ledger.verify(org_id()).ok
    source = Source.get(Source.name == "hr")
    assert source.cursor == "c1" and source.last_full_at == NOW and source.last_error is None


def test_same_input_twice_changes_and_writes_nothing(config):
    read = snapshot(user("alice", "IT Admins", "Engineering"), user("bob", "Staff"))
    pipeline.apply_read(config, "hr", read, now=NOW)
    before = state_counts()
    versions = sorted(Identity.select(Identity.key, Identity.version, Identity.updated_at).tuples())
    again = pipeline.apply_read(config, "hr", read, now=NOW + timedelta(hours=1))
    assert again.actions == 0 and again.stage is not None and again.stage.changed == 0
    assert state_counts() == before
    assert sorted(Identity.select(Identity.key, Identity.version, Identity.updated_at).tuples()) == versions


def test_incomplete_snapshot_never_suspends_or_removes(config):
    pipeline.apply_read(config, "hr", snapshot(user("alice", "Staff"), user("bob", "Staff")), now=NOW)
    partial = snapshot(user("alice"), complete=False, cursor="c2")
    result = pipeline.apply_read(config, "hr", partial, now=NOW)
    assert not result.complete
    assert members() == {"alice@acme.com": ("active", "member"), "bob@acme.com": ("active", "member")}
    assert Identity.select().count() == 2 and GroupMember.select().count() == 2
    source = Source.get(Source.name == "hr")
    assert source.cursor == "c1" and "incomplete read" in source.last_error


def test_complete_snapshot_absence_suspends_and_reappearance_reactivates(config):
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob")), now=NOW)
    pipeline.apply_read(config, "hr", snapshot(user("alice")), now=NOW)
    assert members()["bob@acme.com"] == ("suspended", "member")
    bob = LedgerEntry.get(LedgerEntry.action == "member.suspend")
    assert "no source asserts them" in bob.reason
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob")), now=NOW + timedelta(days=1))
    assert members()["bob@acme.com"] == ("active", "member")


def test_deprovision_after_grace_records_transfer_target(config):
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob")), now=NOW)
    pipeline.apply_read(config, "hr", snapshot(user("alice"), cursor="c2"), now=NOW)
    pipeline.apply_read(config, "hr", snapshot(user("alice"), cursor="c3"), now=NOW + timedelta(days=29))
    assert members()["bob@acme.com"][0] == "suspended"
    pipeline.apply_read(config, "hr", snapshot(user("alice"), cursor="c4"), now=NOW + timedelta(days=30))
    bob = Member.get(Member.email == "bob@acme.com")
    assert bob.status == "deprovisioned" and bob.transfer_to == "it@acme.com"


def test_delta_removes_only_what_it_names(config):
    groups = (GroupRecord("g-staff", "Staff", member_keys=frozenset({"k-alice", "k-bob", "k-carol"})),)
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob"), user("carol"), groups=groups), now=NOW)
    delta = Delta(users=[user("dan")], removed_user_keys=["k-bob"], members_removed={"g-staff": {"k-carol"}})
    pipeline.apply_read(config, "hr", delta, now=NOW)
    assert members() == {
        "alice@acme.com": ("active", "member"),
        "bob@acme.com": ("suspended", "member"),
        "carol@acme.com": ("active", "member"),
        "dan@acme.com": ("active", "member"),
    }
    staff = DirectoryGroup.get(DirectoryGroup.key == "g-staff")
    assert {m.member_key for m in GroupMember.select().where(GroupMember.group == staff)} == {"k-alice"}


def test_a_delta_with_a_census_removes_whoever_it_does_not_list(config):
    """An AD increment blind to deletions carries every key in scope (connectors/ldap/leavers.py): the stored users
    and groups it does not list have left, whatever the delta names."""
    groups = (GroupRecord("g-staff", "Staff", member_keys=frozenset({"k-alice", "k-bob"})), GroupRecord("g-old", "Old"))
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob"), user("carol"), groups=groups), now=NOW)
    census = Delta(
        users=[user("dan")],
        present_user_keys=frozenset({"k-alice", "k-carol"}),
        present_group_keys=frozenset({"g-staff"}),
        notes=["deletions visible: no"],
    )
    result = pipeline.apply_read(config, "hr", census, now=NOW)
    assert result.complete
    assert members() == {
        "alice@acme.com": ("active", "member"),
        "bob@acme.com": ("suspended", "member"),
        "carol@acme.com": ("active", "member"),
        "dan@acme.com": ("active", "member"),
    }
    assert {g.key for g in DirectoryGroup.select()} == {"g-staff"}
    assert Source.get(Source.name == "hr").last_notes == "deletions visible: no"


def test_a_delta_blind_to_deletions_applies_moves_its_cursor_and_is_not_complete(config):
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob")), now=NOW)
    blind = Delta(users=[user("dan")], cursor="c2", blind_to_deletions="bind_dn cannot see deletions")
    result = pipeline.apply_read(config, "hr", blind, now=NOW)
    source = Source.get(Source.name == "hr")
    assert not result.complete and members()["dan@acme.com"] == ("active", "member")
    assert members()["bob@acme.com"] == ("active", "member")
    assert source.cursor == "c2" and source.consecutive_failures == 0
    assert source.last_error == "incomplete view: source hr: bind_dn cannot see deletions"


def test_delta_membership_changes_move_roles(config):
    pipeline.apply_read(config, "hr", snapshot(user("alice"), groups=(GroupRecord("g-it", "IT Admins"),)), now=NOW)
    pipeline.apply_read(config, "hr", Delta(members_added={"g-it": {"k-alice"}}), now=NOW)
    assert members()["alice@acme.com"] == ("active", "admin")
    pipeline.apply_read(config, "hr", Delta(members_removed={"g-it": {"k-alice"}}), now=NOW)
    assert members()["alice@acme.com"] == ("active", "member")
    roles = [json.loads(e.after)["role"] for e in LedgerEntry.select().where(LedgerEntry.action == "member.role")]
    assert roles == ["admin", "member"]


def test_user_groups_become_memberships_and_implied_groups(config):
    pipeline.apply_read(config, "hr", snapshot(user("alice", "IT Admins")), now=NOW)
    group = DirectoryGroup.get()
    assert (group.key, group.display_name) == ("IT Admins", "IT Admins")
    assert GroupMember.get().member_key == "k-alice"


@pytest.mark.parametrize("complete", [True, False])
def test_a_group_listing_a_person_the_read_no_longer_holds_keeps_the_membership(config, complete):
    pipeline.apply_read(config, "hr", snapshot(user("ann", "staff")), now=NOW)
    staff = GroupRecord("staff", "Staff", member_keys=frozenset({"k-ann"}))
    read = snapshot(groups=(staff,), complete=complete, cursor="c2")
    result = pipeline.apply_read(config, "hr", read, now=NOW + timedelta(days=1))
    assert result.complete == complete and not any("UNIQUE" in p for p in result.problems)
    assert [(m.group.key, m.member_key) for m in GroupMember.select()] == [("staff", "k-ann")]
    assert [i.key for i in Identity.select()] == ([] if complete else ["k-ann"])
    again = pipeline.apply_read(config, "hr", read, now=NOW + timedelta(days=2))
    assert again.complete == complete and [(m.group.key, m.member_key) for m in GroupMember.select()] == [
        ("staff", "k-ann")
    ]


def test_duplicate_keys_and_user_names_make_the_read_incomplete_not_a_crash(config):
    twin = replace(user("alice"), email="other@acme.com")
    clash = replace(user("bob"), key="k-bob2", user_name="ALICE")
    result = pipeline.apply_read(config, "hr", snapshot(user("alice"), twin, clash), now=NOW)
    assert not result.complete
    assert any("appears twice" in p for p in result.problems)
    assert members() == {"alice@acme.com": ("active", "member")}


def test_nested_group_cycle_does_not_hang_and_grants_through_nesting(config):
    groups = (
        GroupRecord("g-it", "IT Admins", member_keys=frozenset({"g-help"})),
        GroupRecord("g-help", "Helpdesk", member_keys=frozenset({"g-it", "k-alice"})),
    )
    result = pipeline.apply_read(config, "hr", snapshot(user("alice"), groups=groups), now=NOW)
    assert members()["alice@acme.com"] == ("active", "admin")
    assert result.plan is not None and any("contain each other" in n for n in result.plan.notes)


def test_guard_holds_mass_suspension_without_moving_cursor_then_approve_applies(store, database_url, monkeypatch):
    config = declare(make_config(database_url, policy=Policy(guard_max_percent=10.0, guard_max_count=50)))
    everyone = [user(f"u{i}") for i in range(20)]
    directory = Directory(snapshot(*everyone))
    monkeypatch.setattr(pipeline, "connector_for", directory.connector)
    pipeline.run_source(config, "hr", now=NOW)
    directory.result = snapshot(*everyone[:15], cursor="c2")
    held = pipeline.run_source(config, "hr", now=NOW)
    assert held.held and not held.applied and held.plan_id
    assert "25.0%" in held.held_reason
    assert sum(1 for s, _ in members().values() if s == "active") == 20
    assert Identity.select().count() == 20, "the held read's stage is rolled back"
    assert Source.get(Source.name == "hr").cursor == "c1"
    assert LedgerEntry.select().where(LedgerEntry.action == "plan.held").count() == 1
    assert OutboxEvent.select().where(OutboxEvent.event_type == "plan.held").count() == 1, "the hold alerts"
    again = pipeline.run_source(config, "hr", now=NOW)
    assert again.plan_id == held.plan_id
    assert LedgerEntry.select().where(LedgerEntry.action == "plan.held").count() == 1
    approved = pipeline.approve(config, held.plan_id, now=NOW)
    assert approved.applied and not approved.stale
    assert sum(1 for s, _ in members().values() if s == "suspended") == 5
    assert PlanRow.get_by_id(held.plan_id).status == "approved"
    assert Source.get(Source.name == "hr").cursor == "c2"
    assert ledger.verify(org_id()).ok


def test_batched_run_is_guarded_as_a_whole_and_its_approval_applies_every_batch(store, database_url, monkeypatch):
    """Batches of 2 members: the guard judges the whole plan before any batch, so a held plan applies nothing; the
    approved plan applies in batches and moves the cursor with the last."""
    monkeypatch.setattr(pipeline, "BATCH_MEMBERS", 2)
    config = declare(make_config(database_url, policy=Policy(guard_max_percent=10.0, guard_max_count=50)))
    everyone = [user(f"u{i}") for i in range(20)]
    directory = Directory(snapshot(*everyone))
    monkeypatch.setattr(pipeline, "connector_for", directory.connector)
    first = pipeline.run_source(config, "hr", now=NOW)
    assert first.applied and Member.select().count() == 20
    directory.result = snapshot(*everyone[:15], cursor="c2")
    held = pipeline.run_source(config, "hr", now=NOW)
    assert held.held and not held.applied
    assert sum(1 for s, _ in members().values() if s == "active") == 20, "no batch of a held plan applies"
    assert Source.get(Source.name == "hr").cursor == "c1"
    approved = pipeline.approve(config, held.plan_id, now=NOW)
    assert approved.applied and approved.actions == 5
    assert sum(1 for s, _ in members().values() if s == "suspended") == 5
    assert Source.get(Source.name == "hr").cursor == "c2"
    assert ledger.verify(org_id()).ok
    assert pipeline.run_source(config, "hr", now=NOW).actions == 0


def test_batches_keep_each_members_actions_together_in_plan_order_with_active_owners_last(monkeypatch):
    """Batches of 2 members over a plan sorted by target: team creations and the first two members go first, each
    member's actions stay together and in order, and the active owner (b) goes in the last batch."""
    from syncd.domain.reconcile import Action, Plan

    monkeypatch.setattr(pipeline, "BATCH_MEMBERS", 2)

    def act(kind: str, target: str) -> Action:
        return Action(kind, target, None, kind, "test", None, None)

    plan = Plan(
        (
            act("team.create", "team:core"),
            act("member.join", "member:a"),
            act("member.role", "member:b"),
            act("member.update", "member:c"),
            act("team.join", "member:c"),
            act("member.join", "member:d"),
            act("member.join", "member:e"),
        )
    )
    first, rest = pipeline._batches(plan, {"b", "z"})
    assert [(a.action, a.target) for a in first] == [
        ("team.create", "team:core"),
        ("member.join", "member:a"),
        ("member.update", "member:c"),
        ("team.join", "member:c"),
    ]
    assert [[a.target for a in batch] for batch in rest] == [["member:d", "member:e"], ["member:b"]]


@pytest.mark.parametrize("full", [False, True], ids=["touched", "whole-org-in-chunks"])
def test_batches_after_another_writer_committed_are_planned_again_from_the_store(
    store, database_url, monkeypatch, full
):
    """Batches of 2 members. After the first batch another connection changes u8's staged identity (as a SCIM
    write between batches would change what the store says): u8, in a later batch still, is planned from the store
    as it is then, not from the plan made before that write. A full read plans the whole org in chunks (of 3)."""
    from syncd.store import dialect
    from syncd.sync import chunked

    monkeypatch.setattr(pipeline, "BATCH_MEMBERS", 2)
    monkeypatch.setattr(chunked, "CHUNK_MEMBERS", 3)
    monkeypatch.setattr(pipeline, "REPLAN_MEMBERS", 1)  # and planned again one member per transaction
    config = declare(make_config(database_url))
    everyone = [user(f"u{i}") for i in range(10)]
    pipeline.apply_read(config, "hr", snapshot(*everyone), now=NOW)
    renamed = [replace(u, display_name=f"{u.display_name} Second") for u in everyone]
    pause = dialect.Dialect.let_writers_in
    writes: list[int] = []

    def another_writer(self, held):
        pause(self, held)
        # After the first batch (on SQLite the read's staged rows moved into the stored ones before it).
        if not writes and Member.select().where(Member.display_name.endswith(" Second")).exists():

            def write() -> None:
                with store.atomic():
                    writes.append(
                        Identity.update(display_name="Changed Meanwhile").where(Identity.key == "k-u8").execute()
                    )
                store.close()

            thread = threading.Thread(target=write)
            thread.start()
            thread.join()

    monkeypatch.setattr(dialect.Dialect, "let_writers_in", another_writer)
    pipeline.apply_read(config, "hr", snapshot(*renamed, cursor="c2"), now=NOW, full=full)
    assert writes == [1]
    names = {m.match_key: m.display_name for m in Member.select()}
    assert names["u8@acme.com"] == "Changed Meanwhile"
    assert names["u9@acme.com"] == "U9 Second"
    assert all(names[f"u{i}@acme.com"] == f"U{i} Second" for i in range(10) if i != 8)
    assert ledger.verify(org_id()).ok


def test_batches_with_no_other_writer_apply_the_plan_without_planning_again(store, database_url, monkeypatch):
    """Batches of 2 members and no other writer: the later batches apply the first plan's actions, so the store is
    not gathered again for them (the test wraps ``pipeline.gather`` to count the gathers of later batches). On
    PostgreSQL the dialect's marker is a cluster-wide transaction id, which any other session (another database,
    autovacuum) may take between two batches, making them plan again; so the run is repeated, each with a new
    change, until one goes through without another session in between."""
    monkeypatch.setattr(pipeline, "BATCH_MEMBERS", 2)
    config = declare(make_config(database_url))
    everyone = [user(f"u{i}") for i in range(10)]
    pipeline.apply_read(config, "hr", snapshot(*everyone), now=NOW)
    gathers: list[list[str] | None] = []
    gather = pipeline.gather

    def counted(org, rules, keys=None, **options):
        if not options:
            gathers.append(keys)
        return gather(org, rules, keys, **options)

    monkeypatch.setattr(pipeline, "gather", counted)
    replanned = []
    for attempt in range(40):
        gathers.clear()
        renamed = [replace(u, display_name=f"{u.display_name} Take {attempt}") for u in everyone]
        result = pipeline.apply_read(config, "hr", snapshot(*renamed, cursor=f"c{attempt}"), now=NOW)
        assert result.applied and result.actions == 10
        replanned.append(len(gathers))
        if not gathers:
            break
        time.sleep(0.1)  # other sessions take transaction ids in bursts: try again a little later
    assert replanned[-1] == 0, f"later batches gathered again on every attempt: {replanned}"
    names = {m.match_key: m.display_name for m in Member.select()}
    assert names == {f"u{i}@acme.com": f"U{i} Take {len(replanned) - 1}" for i in range(10)}
    assert ledger.verify(org_id()).ok


def test_approve_of_a_plan_whose_inputs_changed_marks_it_stale_and_plans_again(store, database_url, monkeypatch):
    config = declare(make_config(database_url, policy=Policy(guard_max_percent=10.0, guard_max_count=50)))
    everyone = [user(f"u{i}") for i in range(20)]
    directory = Directory(snapshot(*everyone))
    monkeypatch.setattr(pipeline, "connector_for", directory.connector)
    pipeline.run_source(config, "hr", now=NOW)
    directory.result = snapshot(*everyone[:15], cursor="c2")
    held = pipeline.run_source(config, "hr", now=NOW)
    directory.result = snapshot(*everyone[:19], cursor="c3")
    result = pipeline.approve(config, held.plan_id, now=NOW)
    assert result.stale and result.applied
    assert PlanRow.get_by_id(held.plan_id).status == "stale"
    assert LedgerEntry.select().where(LedgerEntry.action == "plan.stale").count() == 1
    assert sum(1 for s, _ in members().values() if s == "suspended") == 1
    with pytest.raises(pipeline.PipelineError, match="stale, not held"):
        pipeline.approve(config, held.plan_id, now=NOW)


def test_last_owner_survives_an_empty_complete_snapshot(config):
    pipeline.apply_read(config, "hr", snapshot(user("boss", "Owners"), user("alice")), now=NOW)
    pipeline.apply_read(config, "hr", snapshot(cursor="c2"), now=NOW)
    assert members() == {"boss@acme.com": ("active", "owner"), "alice@acme.com": ("suspended", "member")}


def test_connector_failure_is_recorded_on_the_source_and_changes_nothing(config, monkeypatch):
    class Broken:
        def read(self, cursor):
            raise ConnectorError("source hr: cannot read /srv/hr.csv (No such file); check path")

    monkeypatch.setattr(pipeline, "connector_for", lambda settings: Broken())
    before = state_counts()
    for _ in range(2):
        with pytest.raises(ConnectorError):
            pipeline.run_source(config, "hr", now=NOW)
    source = Source.get(Source.name == "hr")
    assert source.consecutive_failures == 2 and "cannot read /srv/hr.csv" in source.last_error
    assert state_counts() == before


def test_run_reads_with_the_stored_cursor_and_full_reads_none(config, monkeypatch):
    directory = Directory(snapshot(user("alice"), cursor="c1"))
    monkeypatch.setattr(pipeline, "connector_for", directory.connector)
    pipeline.run_source(config, "hr", now=NOW)
    directory.result = Delta(cursor="c2")
    pipeline.run_source(config, "hr", now=NOW + timedelta(minutes=15))
    pipeline.run_source(config, "hr", now=NOW + timedelta(minutes=30), full=True)
    pipeline.run_source(config, "hr", now=NOW + timedelta(days=2))
    assert directory.reads == [None, "c1", None, None]


def test_dry_run_writes_nothing(config):
    before = state_counts()
    result = pipeline.apply_read(config, "hr", snapshot(user("alice")), dry_run=True, now=NOW)
    assert result.actions == 1 and not result.applied
    assert state_counts() == before


def test_rules_changes_apply_with_reconcile_org(store, database_url):
    config = declare(make_config(database_url))
    pipeline.apply_read(config, "hr", snapshot(user("alice", "Staff")), now=NOW)
    stricter = declare(replace(config, orgs=(replace(config.orgs[0], rules=()),)))
    plan = pipeline.plan_org(stricter, "acme", now=NOW)
    assert plan.actions == 0
    promoting = (*config.orgs[0].rules, pipeline.Rule(group="Staff", role="admin"))
    changed = replace(config, orgs=(replace(config.orgs[0], rules=promoting),))
    result = pipeline.reconcile_org(changed, "acme", now=NOW)
    assert result.applied and members()["alice@acme.com"] == ("active", "admin")


def test_reconcile_touched_updates_only_named_members(config):
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob")), now=NOW)
    it = DirectoryGroup.create(
        org=org_id(),
        source=Source.get(Source.name == "hr"),
        key="g-it",
        display_name="IT Admins",
        display_name_lower="it admins",
        created_at=NOW,
        updated_at=NOW,
    )
    for name in ("alice", "bob"):
        GroupMember.create(org=org_id(), source=it.source_id, group=it, member_key=f"k-{name}")
    from syncd.store.tx import write_transaction

    with write_transaction():
        changed = pipeline.reconcile_touched(config, org_id(), ["alice@acme.com"], "token:1", NOW)
    assert changed == 1
    assert members() == {"alice@acme.com": ("active", "admin"), "bob@acme.com": ("active", "member")}
    assert LedgerEntry.select().where(LedgerEntry.actor == "token:1").count() == 1


def test_group_rename_replans_everyone_inside_it_even_through_nesting(config):
    groups = (
        GroupRecord("g-x", "Helpers", member_keys=frozenset({"g-inner"})),
        GroupRecord("g-inner", "Inner", member_keys=frozenset({"k-alice"})),
    )
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob"), groups=groups), now=NOW)
    assert members()["alice@acme.com"] == ("active", "member")
    renamed = (replace(groups[0], display_name="IT Admins"), groups[1])
    result = pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob"), groups=renamed), now=NOW)
    assert members() == {"alice@acme.com": ("active", "admin"), "bob@acme.com": ("active", "member")}
    assert result.actions == 1


def test_a_rule_change_replans_every_member_on_the_next_run(store, database_url):
    config = declare(make_config(database_url))
    read = snapshot(user("alice", "Staff"), user("bob", "Staff"))
    pipeline.apply_read(config, "hr", read, now=NOW)
    promoting = (*config.orgs[0].rules, pipeline.Rule(group="Staff", role="admin"))
    changed = declare(replace(config, orgs=(replace(config.orgs[0], rules=promoting),)))
    result = pipeline.apply_read(changed, "hr", read, now=NOW)
    assert result.actions == 2
    assert members() == {"alice@acme.com": ("active", "admin"), "bob@acme.com": ("active", "admin")}
    assert pipeline.apply_read(changed, "hr", read, now=NOW).actions == 0


def test_unexpected_read_failure_records_no_secret(config, monkeypatch):
    class Leaky:
        def read(self, cursor):
            raise RuntimeError("bind failed for cn=admin with password hunter2")

    monkeypatch.setattr(pipeline, "connector_for", lambda settings: Leaky())
    with pytest.raises(pipeline.PipelineError) as error:
        pipeline.run_source(config, "hr", now=NOW)
    source = Source.get(Source.name == "hr")
    assert "hunter2" not in source.last_error and "hunter2" not in str(error.value)
    assert source.last_error.startswith("source hr: read failed (RuntimeError)")


def test_teams_nest_under_their_parent_and_deprovisioned_member_rejoins_on_return(store, database_url):
    rules = (pipeline.Rule(group="Engineering", team="Platform", parent="Engineering Dept", team_role="maintainer"),)
    config = declare(make_config(database_url, rules=rules))
    pipeline.apply_read(config, "hr", snapshot(user("alice", "Engineering"), user("bob")), now=NOW)
    platform = Team.get(Team.slug == "platform")
    assert platform.name == "Platform" and platform.parent.slug == "engineering-dept"
    pipeline.apply_read(config, "hr", snapshot(user("bob"), cursor="c2"), now=NOW)
    pipeline.apply_read(config, "hr", snapshot(user("bob"), cursor="c3"), now=NOW + timedelta(days=31))
    alice = Member.get(Member.email == "alice@acme.com")
    assert alice.status == "deprovisioned" and TeamMember.select().where(TeamMember.member == alice).count() == 0
    pipeline.apply_read(config, "hr", snapshot(user("alice", "Engineering"), user("bob"), cursor="c4"), now=NOW)
    alice = Member.get(Member.email == "alice@acme.com")
    assert alice.status == "active" and alice.deprovisioned_at is None and alice.transfer_to is None
    assert [(t.team.slug, t.role) for t in TeamMember.select().where(TeamMember.member == alice)] == [
        ("platform", "maintainer")
    ]
    actions = [e.action for e in LedgerEntry.select().where(LedgerEntry.target == "member:alice@acme.com")]
    assert actions == ["member.join", "member.suspend", "member.deprovision", "member.reactivate", "team.join"]


def test_identities_of_two_sources_join_into_one_member_by_match_key(config):
    scim = Source.get(Source.name == "scim:acme")
    Identity.create(
        org=org_id(),
        source=scim,
        key="scim-1",
        user_name="ALICE@ACME.COM",
        user_name_lower="alice@acme.com",
        email="Alice@Acme.com",
        email_lower="alice@acme.com",
        display_name="alice (idp)",
        match_key="alice@acme.com",
        created_at=NOW,
        updated_at=NOW,
    )
    pipeline.apply_read(config, "hr", snapshot(user("alice")), now=NOW)
    (member,) = Member.select()
    assert member.display_name == "Alice", "the hr source (precedence 10) beats the SCIM source (0)"
    from syncd.admin.members import listing

    assert listing(member.org)[0]["sources"] == ["hr", "scim:acme"]
    pipeline.apply_read(config, "hr", snapshot(cursor="c2"), now=NOW)
    assert Member.get().status == "active", "still asserted by the SCIM source"
    assert Member.get().display_name == "alice (idp)"


def test_delta_group_with_members_replaces_its_list_and_without_members_keeps_it(config):
    groups = (
        GroupRecord("g-it", "IT Admins", member_keys=frozenset({"k-alice"})),
        GroupRecord("g-staff", "Staff", member_keys=frozenset({"k-alice", "k-bob"})),
    )
    pipeline.apply_read(config, "hr", snapshot(user("alice"), user("bob"), groups=groups), now=NOW)
    delta = Delta(
        groups=[
            GroupRecord("g-it", "IT Admins", member_keys=frozenset({"k-bob"})),
            GroupRecord("g-staff", "All Staff", member_keys=None),
        ]
    )
    pipeline.apply_read(config, "hr", delta, now=NOW)
    assert members() == {"alice@acme.com": ("active", "member"), "bob@acme.com": ("active", "admin")}
    staff = DirectoryGroup.get(DirectoryGroup.key == "g-staff")
    assert staff.display_name == "All Staff"
    assert {m.member_key for m in GroupMember.select().where(GroupMember.group == staff)} == {"k-alice", "k-bob"}
    pipeline.apply_read(config, "hr", Delta(removed_group_keys=["g-it"]), now=NOW)
    assert members()["bob@acme.com"] == ("active", "member")


def test_org_plan_held_for_mass_deprovision_is_approved_without_a_source(store, database_url):
    strict = Policy(grace_days=30, guard_max_percent=10.0, guard_max_count=3, transfer_to="it@acme.com")
    lenient = declare(make_config(database_url))
    people = [user(f"u{i}") for i in range(6)]
    pipeline.apply_read(lenient, "hr", snapshot(*people, user("keep")), now=NOW)
    pipeline.apply_read(lenient, "hr", snapshot(user("keep"), cursor="c2"), now=NOW)
    config = declare(make_config(database_url, policy=strict))
    held = pipeline.reconcile_org(config, "acme", now=NOW + timedelta(days=31))
    assert held.held and "guard_max_count 3" in held.held_reason
    assert Member.select().where(Member.status == "deprovisioned").count() == 0
    approved = pipeline.approve(config, held.plan_id, now=NOW + timedelta(days=31))
    assert approved.applied and not approved.stale
    assert Member.select().where(Member.status == "deprovisioned").count() == 6
    assert [e.action for e in LedgerEntry.select().where(LedgerEntry.target == f"plan:{held.plan_id}")] == [
        "plan.held",
        "plan.approved",
    ]


def test_two_concurrent_runs_of_the_same_read_apply_it_exactly_once(config):
    import threading

    from syncd.store import database

    read = snapshot(*(user(f"u{i}") for i in range(40)))
    results, errors = [], []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            results.append(pipeline.apply_read(config, "hr", read, now=NOW))
        except Exception as error:  # collected for the assertion below
            errors.append(error)
        finally:
            database.obj.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(r.actions for r in results) == [0, 40]
    assert LedgerEntry.select().where(LedgerEntry.action == "member.join").count() == 40
    assert Identity.select().count() == 40 and ledger.verify(org_id()).ok


def test_gc_pause_nests_and_restores_the_collector():
    import gc

    assert gc.isenabled()
    with pipeline.gc_paused():
        with pipeline.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_changing_match_on_rekeys_every_identity_and_rejoins_members(store, database_url):
    config = declare(make_config(database_url))
    scim = Source.get(Source.name == "scim:acme")
    Identity.create(
        org=org_id(),
        source=scim,
        key="scim-1",
        user_name="alice",
        user_name_lower="alice",
        email="alice@idp.example",
        email_lower="alice@idp.example",
        match_key="alice@idp.example",
        created_at=NOW,
        updated_at=NOW,
    )
    pipeline.apply_read(config, "hr", snapshot(user("alice")), now=NOW)
    assert Member.select().count() == 2, "by email, the two identities are two people"
    by_name = replace(config, orgs=(replace(config.orgs[0], match_on="userName"),))
    declare(by_name)
    pipeline.apply_read(by_name, "hr", snapshot(user("alice")), now=NOW)
    assert {i.match_key for i in Identity.select()} == {"alice"}
    assert Member.get(Member.match_key == "alice").status == "active"
    assert {m.status for m in Member.select().where(Member.match_key != "alice")} == {"suspended"}


def test_a_managers_new_email_in_a_delta_reaches_the_people_they_manage(config):
    boss = user("boss")
    report = replace(user("report"), manager_key="k-boss")
    pipeline.apply_read(config, "hr", snapshot(boss, report), now=NOW)
    assert Member.get(Member.email == "report@acme.com").manager == "boss@acme.com"
    # Only the manager is in the delta (an LDAP manager DN does not change when the manager's mail does).
    pipeline.apply_read(config, "hr", Delta(users=[replace(boss, email="chief@acme.com")], cursor="c2"), now=NOW)
    assert Member.get(Member.email == "report@acme.com").manager == "chief@acme.com"


def test_staging_folds_identifiers_as_scim_does(config):
    """One identity folding (syncd.store.dialect.fold, NFC then lower case): a userName and email sent decomposed
    (e + combining acute) are stored folded exactly as a SCIM write stores them, so a SCIM filter finds either."""
    from syncd.domain.folding import fold

    decomposed = "E\u0301mile@Acme.com"
    read = snapshot(replace(user("emile"), user_name=decomposed, email=decomposed))
    pipeline.apply_read(config, "hr", read, now=NOW)
    stored = Identity.get(Identity.user_name == decomposed)
    assert stored.user_name_lower == stored.email_lower == fold(decomposed) == "\u00e9mile@acme.com"
