"""Member fast paths and the reconciliation hook of SCIM writes.

Adding or removing one member of a 10,000-member group must cost what it costs on a 10-member group: the statements
run are the same, and none reads the member list (every statement on ``group_member`` names the member keys).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from scim import storage as scim_storage
from syncd.clock import utcnow
from syncd.store.db import database
from syncd.store.models import DirectoryGroup, GroupMember, Identity, Source


@contextmanager
def recorded_sql(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    db = database.obj
    statements: list[str] = []
    original = db.execute_sql

    def execute_sql(sql, params=None, *args, **kwargs):
        statements.append(sql)
        return original(sql, params, *args, **kwargs)

    monkeypatch.setattr(db, "execute_sql", execute_sql)
    try:
        yield statements
    finally:
        monkeypatch.setattr(db, "execute_sql", original)


def seed_group(scim, size: int, name: str) -> tuple[str, list[str]]:
    """A group of ``size`` users of org A, inserted directly (the setup is not what is measured)."""
    source = Source.get(Source.name == "scim:acme")
    now = utcnow()
    keys = [str(uuid.uuid4()) for _ in range(size)]
    rows = [
        {
            "org": scim.org_a.id,
            "source": source.id,
            "key": key,
            "user_name": f"{name}-{i}",
            "user_name_lower": f"{name}-{i}",
            "unique_name": f"{name}-{i}",
            "email": f"{name}-{i}@acme.com",
            "email_lower": f"{name}-{i}@acme.com",
            "match_key": f"{name}-{i}@acme.com",
            "resource": f'{{"userName": "{name}-{i}"}}',
            "created_at": now,
            "updated_at": now,
        }
        for i, key in enumerate(keys)
    ]
    with database.obj.atomic():
        for start in range(0, size, 500):
            Identity.insert_many(rows[start : start + 500]).execute()
    group = scim.a.create_group(name)
    group_row = DirectoryGroup.get(DirectoryGroup.key == group["id"])
    members = [
        {"org": scim.org_a.id, "source": source.id, "group": group_row.id, "member_key": key, "member_kind": "User"}
        for key in keys
    ]
    with database.obj.atomic():
        for start in range(0, size, 500):
            GroupMember.insert_many(members[start : start + 500]).execute()
    return group["id"], keys


def member_statements_read_no_list(statements: list[str]) -> bool:
    return all('"member_key"' in s for s in statements if "group_member" in s and not s.startswith("INSERT"))


def test_adding_and_removing_one_member_of_a_10000_member_group_runs_what_a_10_member_group_runs(scim, monkeypatch):
    # Every write stamps the source's last write: at the default (at most once a second) whether a PATCH stamps depends
    # on how long the previous writes took, not on the group's size, and the two statement lists differed by chance.
    monkeypatch.setattr(scim_storage, "WRITE_STAMP_SECONDS", 0.0)
    big, big_keys = seed_group(scim, 10_000, "big")
    small, small_keys = seed_group(scim, 10, "small")
    runs = {}
    for group_id, keys in ((big, big_keys), (small, small_keys)):
        # a newcomer each, so that both reconciliations read a member in exactly one group (the real reconciler
        # runs behind the spy)
        newcomer = scim.a.create_user(f"newcomer-{group_id}", emails=[{"value": f"n-{group_id}@acme.com"}])["id"]
        with recorded_sql(monkeypatch) as statements:
            added = scim.a.patch(
                f"/Groups/{group_id}", [{"op": "add", "path": "members", "value": [{"value": newcomer}]}]
            )
            removed = scim.a.patch(f"/Groups/{group_id}", [{"op": "remove", "path": f'members[value eq "{keys[3]}"]'}])
        assert added.status == 204 and removed.status == 204
        assert member_statements_read_no_list(statements), statements
        runs[group_id] = statements
    assert runs[big] == runs[small]
    assert (
        GroupMember.select().where(GroupMember.group == DirectoryGroup.get(DirectoryGroup.key == big).id).count()
        == 10_000
    )


def test_excluded_members_reads_no_member_row(scim, monkeypatch):
    big, _ = seed_group(scim, 2_000, "wide")
    with recorded_sql(monkeypatch) as statements:
        single = scim.a.get(f"/Groups/{big}", query={"excludedAttributes": "members"})
        listed = scim.a.get("/Groups", query={"filter": 'displayName eq "wide"', "excludedAttributes": "members"})
    assert single.status == 200 and "members" not in single.body
    assert listed.body["totalResults"] == 1 and "members" not in listed.body["Resources"][0]
    assert not [s for s in statements if "group_member" in s]


def test_lookups_by_id_username_and_external_id_use_indexes(scim):
    scim.a.create_user("indexed", externalId="EXT-1")
    db = database.obj
    source = Source.get(Source.name == "scim:acme").id
    for column, value in (("key", "x"), ("user_name_lower", "indexed"), ("external_id", "EXT-1")):
        sql = f'SELECT * FROM "identity" WHERE "source_id" = {source} AND "{column}" = \'{value}\''
        if db.__class__.__name__.startswith("Postgres"):
            db.execute_sql("SET enable_seqscan = off")
            plan = " ".join(row[0] for row in db.execute_sql("EXPLAIN " + sql).fetchall())
            db.execute_sql("SET enable_seqscan = on")
            assert "Index" in plan, plan
        else:
            plan = " ".join(str(row[-1]) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql).fetchall())
            assert "USING INDEX" in plan and column in plan, plan


def test_user_writes_reconcile_the_old_and_new_match_keys(scim):
    rec = scim.reconciliations
    user = scim.a.create_user("mover", emails=[{"value": "Mover@Acme.com", "primary": True}])
    assert rec.calls[-1] == (scim.org_a.id, ["mover@acme.com"], rec.calls[-1][2])
    scim.a.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "emails", "value": [{"value": "new@acme.com"}]}])
    assert rec.calls[-1][1] == ["mover@acme.com", "new@acme.com"]
    scim.a.delete(f"/Users/{user['id']}")
    assert rec.calls[-1][1] == ["new@acme.com"]


def test_group_writes_reconcile_the_members_touched(scim):
    rec = scim.reconciliations
    ids = [scim.a.create_user(f"m{i}", emails=[{"value": f"m{i}@acme.com"}])["id"] for i in range(3)]
    group = scim.a.create_group("Team", ids[:2])
    assert rec.calls[-1][1] == ["m0@acme.com", "m1@acme.com"]
    scim.a.patch(f"/Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": ids[2]}]}])
    assert rec.calls[-1][1] == ["m2@acme.com"]
    scim.a.patch(f"/Groups/{group['id']}", [{"op": "remove", "path": "members", "value": [{"value": ids[0]}]}])
    assert rec.calls[-1][1] == ["m0@acme.com"]
    scim.a.patch(f"/Groups/{group['id']}", [{"op": "replace", "path": "displayName", "value": "Renamed"}])
    assert rec.calls[-1][1] == ["m1@acme.com", "m2@acme.com"]
    rec.clear()
    scim.a.patch(f"/Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": ids[1]}]}])
    assert rec.calls == []
    scim.a.delete(f"/Groups/{group['id']}")
    assert rec.calls[-1][1] == ["m1@acme.com", "m2@acme.com"]


def test_a_failing_reconciliation_rolls_the_scim_write_back(scim, monkeypatch):
    from syncd.sync import pipeline

    def fail(*args, **kwargs):
        raise RuntimeError("reconciler down")

    monkeypatch.setattr(pipeline, "reconcile_touched", fail)
    answer = scim.a.post(
        "/Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "x",
            "emails": [{"value": "x@acme.com"}],
        },
    )
    assert answer.status == 500 and "reconciler" not in str(answer.body)
    assert Identity.select().count() == 0


def test_a_refused_write_reconciles_nothing(scim):
    scim.a.create_user("one", emails=[{"value": "one@acme.com"}])
    scim.reconciliations.clear()
    answer = scim.a.post(
        "/Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ONE",
            "emails": [{"value": "z@acme.com"}],
        },
    )
    assert answer.status == 409
    assert scim.reconciliations.calls == []


def test_a_member_patch_with_a_filter_the_fast_path_cannot_take_still_applies(scim):
    ids = [scim.a.create_user(f"f{i}")["id"] for i in range(3)]
    group = scim.a.create_group("Filtered", ids)
    answer = scim.a.patch(f"/Groups/{group['id']}", [{"op": "remove", "path": 'members[type eq "User"]'}])
    assert answer.status == 204
    assert "members" not in scim.a.get(f"/Groups/{group['id']}").body


def test_deleting_a_group_checks_its_etag_and_removes_its_members(scim):
    big, _ = seed_group(scim, 1_000, "doomed")
    stale = scim.a.delete(f"/Groups/{big}", headers={"If-Match": 'W/"0"'})
    assert stale.status == 412
    current = scim.a.get(f"/Groups/{big}", query={"excludedAttributes": "members"}).headers["ETag"]
    assert scim.a.delete(f"/Groups/{big}", headers={"If-Match": current}).status == 204
    assert scim.a.get(f"/Groups/{big}").status == 404
    assert GroupMember.select().count() == 0
    assert len(scim.reconciliations.calls[-1][1]) == 1_000


def test_a_user_without_display_name_is_known_by_given_and_family_name(scim):
    created = scim.a.create_user("eve@acme.com", name={"givenName": "Eve", "familyName": "Example"})
    assert "displayName" not in created
    assert Identity.get(Identity.key == created["id"]).display_name == "Eve Example"
    group = scim.a.create_group("Staff", [created["id"]])
    assert scim.a.get(f"/Groups/{group['id']}").body["members"][0]["display"] == "Eve Example"
    formatted = scim.a.create_user("zed@acme.com", name={"formatted": "Dr. Zed", "givenName": "Zed"})
    assert Identity.get(Identity.key == formatted["id"]).display_name == "Dr. Zed"


def test_a_scim_write_that_changes_a_member_locks_the_org_once(scim, monkeypatch):
    """The org lock has one owner (syncd.sync.ledger.lock_org): a SCIM write that creates a member takes it once,
    and the ledger head is read under it (PostgreSQL: one ``FOR NO KEY UPDATE``; SQLite: its write transaction)."""
    import peewee

    with recorded_sql(monkeypatch) as statements:
        scim.a.create_user("lock-once", emails=[{"value": "lock-once@acme.com"}])
    locks = [s for s in statements if "FOR NO KEY UPDATE" in s]
    assert len(locks) == (1 if isinstance(database.obj, peewee.PostgresqlDatabase) else 0), statements
    assert any("ledger_entry" in s for s in statements)
