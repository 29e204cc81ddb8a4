"""Webhook delivery against a real receiver on 127.0.0.1 that verifies every request with ``standardwebhooks``:
per-member order through failures and give-ups, a receiver that goes down and comes back, ids unique across stores,
per-send timestamps, the log lines, an event for every ledgered change, and the outbox migration.

``deliver_due`` is called directly with a stepped scheduling clock (``now``) so that retries 30 s apart need no
waiting; the signatures carry the real time, which the library checks. ``syncd serve`` delivering the same way is
tests/service/test_serve_webhooks.py.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import peewee
import pytest

from syncd.admin import tokens
from syncd.clock import iso, utcnow
from syncd.config import OrgSettings, Policy
from syncd.config import load as load_config
from syncd.service import webhooks
from syncd.store import database, open_database, upgrade
from syncd.store.migrations import MIGRATIONS, SchemaVersion, _outbox_message_ids
from syncd.store.models import LedgerEntry, OutboxEvent
from syncd.sync import ledger, orgs, outbox
from tests.webhook_receiver import VerifyingReceiver

SECRET = "whsec_" + base64.b64encode(b"syncd-test-webhook-key-32-bytes!").decode()


@pytest.fixture
def receiver() -> Iterator[VerifyingReceiver]:
    running = VerifyingReceiver(SECRET)
    yield running
    running.down()


def hooks(tmp_path, url):
    (tmp_path / "hook.secret").write_text(SECRET + "\n", encoding="utf-8")
    path = tmp_path / "hooks.toml"
    path.write_text(f'[[webhooks]]\nurl = "{url}"\nsecret_file = "hook.secret"\n', encoding="utf-8")
    return load_config(path)


def quiet_org(slug="acme"):
    """An org whose own ``org.create`` event is already delivered, so that tests see only the events they add."""
    org = orgs.create(slug, slug.title())
    OutboxEvent.update(delivered_at=utcnow()).where(OutboxEvent.org == org).execute()
    return org


def change(org, member, step, at):
    """A member event the way the apply path writes it: ordered by its ``member:`` target."""
    target = f"member:{member}"
    payload = json.dumps({"target": target, "step": step})
    return outbox.enqueue(org.id, "member.role", payload, at=at, order_key=target)


def sent(receiver, member):
    return [r.payload["data"]["step"] for r in receiver.accepted() if r.payload["data"]["target"] == f"member:{member}"]


def events_named(caplog, name):
    return [r for r in caplog.records if r.getMessage() == name]


def test_a_members_later_event_waits_until_the_earlier_one_is_delivered(store, receiver, tmp_path):
    start = utcnow()
    org = quiet_org()
    first = change(org, "alice", 1, start)
    other = change(org, "bob", 1, start)
    change(org, "alice", 2, start)
    change(org, "alice", 3, start)
    config = hooks(tmp_path, receiver.url)
    alice_first = {"target": "member:alice", "step": 1}
    receiver.answer = lambda payload, attempt: 500 if payload["data"] == alice_first and attempt == 1 else 204

    report = webhooks.deliver_due(config, now=start)

    assert report.failed == [first.id] and report.delivered == [other.id]
    assert [r.payload["data"]["target"] for r in receiver.received] == ["member:alice", "member:bob"]
    assert webhooks.deliver_due(config, now=start + timedelta(seconds=29)).delivered == []

    later = webhooks.deliver_due(config, now=start + timedelta(seconds=30))

    assert len(later.delivered) == 3, "the held events follow in the same round once the first is through"
    assert sent(receiver, "alice") == [1, 2, 3] and sent(receiver, "bob") == [1]
    assert all(r.verified for r in receiver.received)


def test_a_given_up_event_stops_holding_back_the_members_next_one(store, receiver, tmp_path, caplog):
    start = utcnow()
    org = quiet_org()
    stuck = change(org, "alice", 1, start)
    change(org, "alice", 2, start)
    receiver.answer = lambda payload, attempt: 503 if payload["data"]["step"] == 1 else 204
    config = hooks(tmp_path, receiver.url)
    moment = start
    caplog.set_level(logging.INFO, logger="syncd.webhooks")
    for _ in range(webhooks.MAX_ATTEMPTS - 1):
        webhooks.deliver_due(config, now=moment)
        moment += webhooks.MAX_BACKOFF
    assert sent(receiver, "alice") == [], "step 2 waits while step 1 is still being retried"
    assert {r.payload["data"]["step"] for r in receiver.received} == {1}

    last = webhooks.deliver_due(config, now=moment)

    assert last.gave_up == [stuck.id] and len(last.delivered) == 1
    assert [r.payload["data"]["step"] for r in receiver.received][-2:] == [1, 2]
    failed = events_named(caplog, "webhook.delivery.failed")
    assert len(failed) == webhooks.MAX_ATTEMPTS - 1 and {r.levelno for r in failed} == {logging.INFO}
    (gave_up,) = events_named(caplog, "webhook.delivery.gave_up")
    fields = gave_up.syncd_fields
    assert gave_up.levelno == logging.WARNING and fields["attempts"] == webhooks.MAX_ATTEMPTS
    assert fields["endpoint"] == receiver.url and fields["status"] == "HTTP 503"
    assert fields["webhook_id"] == OutboxEvent.get_by_id(stuck.id).message_id


def test_a_receiver_that_goes_down_and_comes_back_gets_every_event_once_in_order(store, receiver, tmp_path, caplog):
    start = utcnow()
    org = quiet_org()
    for step in (1, 2):
        for member in ("alice", "bob", "carol"):
            change(org, member, step, start)
    config = hooks(tmp_path, receiver.url + "?token=s3cr3t-in-query")
    receiver.down()
    caplog.set_level(logging.INFO, logger="syncd.webhooks")

    report = webhooks.deliver_due(config, now=start)

    assert len(report.failed) == 1 and len(report.deferred) == 2, "one attempt per round at an unreachable receiver"
    (failed,) = events_named(caplog, "webhook.delivery.failed")
    fields = failed.syncd_fields
    assert fields["endpoint"] == receiver.url and fields["status"] == "ConnectionError"
    assert fields["attempt"] == 1 and fields["next_attempt_at"] == iso(start + timedelta(seconds=30))
    assert "s3cr3t" not in json.dumps(fields)

    receiver.up()
    webhooks.deliver_due(config, now=start + timedelta(seconds=30))

    assert all(r.verified for r in receiver.received)
    assert len(receiver.accepted()) == 6 and len({r.id for r in receiver.accepted()}) == 6
    for member in ("alice", "bob", "carol"):
        assert sent(receiver, member) == [1, 2]
    assert OutboxEvent.select().where(OutboxEvent.delivered_at.is_null()).count() == 0


def test_each_send_is_stamped_when_it_is_sent(store, receiver, tmp_path):
    start = utcnow()
    org = quiet_org()
    for member in ("alice", "bob", "carol"):
        change(org, member, 1, start)
    offsets = iter(range(100))

    webhooks.deliver_due(hooks(tmp_path, receiver.url), now=start, stamp=lambda: time.time() + next(offsets))

    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert len(stamps) == 3 and stamps[0] < stamps[1] < stamps[2], "one stamp per send, not one per batch"
    assert all(r.verified for r in receiver.received)


def test_webhook_ids_are_unique_across_two_stores(store, receiver, tmp_path):
    """Two stores number their outbox rows alike; the ``webhook-id`` each row got when written still differs."""
    config = hooks(tmp_path, receiver.url)
    first_store = database.obj
    ids: dict[str, list[tuple[int, str]]] = {}
    second_store = None
    try:
        for name in ("first", "second"):
            if name == "second":
                second_store = open_database(f"sqlite:///{tmp_path / 'second.db'}")
                upgrade()
            start = utcnow()
            org = orgs.create("acme", "Acme")
            for member in ("alice", "bob"):
                change(org, member, 1, start)
            report = webhooks.deliver_due(config, now=start + timedelta(seconds=1))
            assert len(report.delivered) == 3
            ids[name] = list(
                OutboxEvent.select(OutboxEvent.id, OutboxEvent.message_id).order_by(OutboxEvent.id).tuples()
            )
    finally:
        if second_store is not None:
            second_store.close()
        database.initialize(first_store)
    assert [row_id for row_id, _ in ids["first"]] == [row_id for row_id, _ in ids["second"]]
    received = [r.id for r in receiver.accepted()]
    assert len(received) == 6 and len(set(received)) == 6
    assert sorted(received) == sorted(message_id for rows in ids.values() for _, message_id in rows)
    assert all(r.verified and r.id.startswith("msg_") for r in receiver.received)


def test_every_ledgered_change_has_an_event_with_its_sequence_number(store):
    org = orgs.create("acme", "Acme")
    row, token = tokens.create(org, "scim", description="okta")
    tokens.revoke(row.id)
    orgs.declare(OrgSettings(slug="acme", name="Acme Corp", policy=Policy(grace_days=7)))
    assert ledger.prune(org.id, utcnow() + timedelta(seconds=0), now=utcnow() + timedelta(seconds=1)).pruned >= 1

    events = {
        (e.event_type, json.loads(e.payload)["seq"]): e for e in OutboxEvent.select().where(OutboxEvent.org == org)
    }
    actions = {"org.create", "token.create", "token.revoke", "org.update", "ledger.checkpoint"}
    assert {kind for kind, _ in events} == actions
    head = LedgerEntry.select().where(LedgerEntry.org == org).order_by(LedgerEntry.seq.desc()).get()
    assert ("ledger.checkpoint", head.seq) in events, "the checkpoint's event carries its place in the chain"
    assert len(events) == head.seq, "one event per entry, the pruned ones included"
    created = json.loads(events[("token.create", 2)].payload)
    assert created["target"] == f"token:{row.id}" and created["after"]["scope"] == "scim"
    assert token not in json.dumps([e.payload for e in events.values()])
    assert len({e.message_id for e in events.values()}) == len(events)


def test_the_outbox_migration_gives_existing_rows_unique_ids_and_is_idempotent(store):
    """A database made before it: the columns and indexes dropped, rows written the old way, then upgraded."""
    db = database.obj
    number = MIGRATIONS.index(_outbox_message_ids) + 1
    org = quiet_org()
    OutboxEvent.delete().execute()
    for name in ("outbox_event_message_id", "outbox_event_org_id_order_key"):
        db.execute_sql(f'DROP INDEX "{name}"')
    for column in ("message_id", "order_key"):
        db.execute_sql(f'ALTER TABLE "outbox_event" DROP COLUMN "{column}"')
    SchemaVersion.delete().where(SchemaVersion.version >= number).execute()
    for target, delivered in (("member:alice", None), ("member:bob", utcnow()), (None, None)):
        db.execute_sql(
            'INSERT INTO "outbox_event" ("org_id", "event_type", "payload", "created_at", "attempts", "delivered_at") '
            f"VALUES ({db.param}, 'member.join', {db.param}, {db.param}, 0, {db.param})",
            (org.id, json.dumps({"target": target} if target else {"plan_id": "p"}), utcnow(), delivered),
        )

    assert upgrade() == list(range(number, len(MIGRATIONS) + 1))

    rows = list(OutboxEvent.select().order_by(OutboxEvent.id))
    assert len({r.message_id for r in rows}) == 3 and all(r.message_id.startswith("msg_") for r in rows)
    assert [r.order_key for r in rows] == ["member:alice", None, None], "undelivered rows get their target"
    before = [r.message_id for r in rows]
    with db.atomic():
        _outbox_message_ids(db)
    assert [r.message_id for r in OutboxEvent.select().order_by(OutboxEvent.id)] == before
    with pytest.raises(peewee.IntegrityError), db.atomic():
        OutboxEvent.update(message_id=before[0]).where(OutboxEvent.id == rows[1].id).execute()


def test_two_installations_send_different_ids_for_their_first_events(cli, store, database_url, receiver, tmp_path):
    """What an operator runs: two stores (this backend and a SQLite file), each with its org and a token, each
    delivering with ``syncd webhooks deliver`` to one receiver. Both number their rows 1, 2; the ids differ."""
    (tmp_path / "hook.secret").write_text(SECRET + "\n", encoding="utf-8")
    hook = f'[[webhooks]]\nurl = "{receiver.url}"\nsecret_file = "hook.secret"\n'
    for name, url in (("one", database_url), ("two", f"sqlite:///{tmp_path / 'two.db'}")):
        config = tmp_path / f"{name}.toml"
        config.write_text(f'[database]\nurl = "{url}"\n\n{hook}', encoding="utf-8")
        assert cli("--config", str(config), "db", "upgrade").code == 0
        assert cli("--config", str(config), "orgs", "create", "acme", "--name", "Acme").code == 0
        assert cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "scim").code == 0
        delivered = cli("--config", str(config), "webhooks", "deliver", "--format", "json")
        assert delivered.code == 0 and json.loads(delivered.stdout)["delivered"] == 2, delivered.stdout
    accepted = receiver.accepted()
    assert [r.payload["type"] for r in accepted] == ["org.create", "token.create"] * 2
    assert [r.payload["data"]["seq"] for r in accepted] == [1, 2, 1, 2]
    assert len({r.id for r in accepted}) == 4 and all(r.verified for r in receiver.received)
