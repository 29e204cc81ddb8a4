"""Webhooks from a running ``syncd serve`` with the real pipeline and file connector, on SQLite and PostgreSQL, to a
receiver on 127.0.0.1 that verifies every request with the ``standardwebhooks`` library, answers 500 once, goes down
and comes back: every ledgered change arrives once, signed, each member's events in ledger order, and each failed
attempt is one log line that names the endpoint without its query.
"""

from __future__ import annotations

import base64
import csv
import json
import time
from pathlib import Path

from syncd.service.admin_client import trigger_sync
from syncd.store.models import LedgerEntry, OutboxEvent
from tests.webhook_receiver import VerifyingReceiver

SECRET = "whsec_" + base64.b64encode(b"syncd-test-service-key-32-bytes!").decode()
PEOPLE = [f"p{i:05d}@acme.com" for i in range(4)]


def _write_people(path: Path, emails: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["employee id", "email", "name", "department", "groups"])
        for i, email in enumerate(emails):
            writer.writerow([f"E{i:05d}", email, f"Person {i}", "Sales", "Staff"])


def _config(tmp_path: Path, database_url: str, hook_url: str) -> Path:
    (tmp_path / "hook.secret").write_text(SECRET + "\n", encoding="utf-8")
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n\n[logging]\nformat = "json"\n\n'
        # Due events every second and a first retry a second after a failure, so the test takes seconds.
        '[server]\nwebhook_every = "1s"\nwebhook_first_backoff = "1s"\n\n'
        '[[orgs]]\nslug = "acme"\nname = "Acme"\ndomains = ["acme.com"]\n[orgs.policy]\nguard_max_percent = 100\n'
        "guard_max_count = 1000\n\n"
        '[[sources]]\nname = "hr"\norg = "acme"\nkind = "file"\nschedule = "1h"\npath = "people.csv"\n\n'
        f'[[webhooks]]\nurl = "{hook_url}"\nsecret_file = "hook.secret"\n',
        encoding="utf-8",
    )
    return config


def _until(condition, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_delivers_every_change_once_in_member_order_through_a_failing_and_absent_receiver(
    serve, tmp_path, cli, store, database_url
):
    receiver = VerifyingReceiver(SECRET)
    first_join = f"member:{PEOPLE[0]}"
    receiver.answer = lambda p, attempt: (
        500 if attempt == 1 and p["type"] == "member.join" and p["data"]["target"] == first_join else 204
    )
    _write_people(tmp_path / "people.csv", PEOPLE)
    config = _config(tmp_path, database_url, receiver.url + "?token=s3cr3t-in-query")
    created = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "admin")
    assert created.code == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    try:
        service = serve(config, run=None)
        service.wait_event("source.run.ok")
        (refused,) = service.wait_event("webhook.delivery.failed", timeout=40)

        receiver.down()
        _write_people(tmp_path / "people.csv", PEOPLE[2:])
        assert trigger_sync(service.url(""), admin, "hr")["result"] == "ok"
        service.wait_event("webhook.delivery.failed", count=2, timeout=40)
        receiver.up()

        def all_delivered() -> bool:
            return not OutboxEvent.select().where(OutboxEvent.delivered_at.is_null()).exists()

        _until(all_delivered, "every event delivered after the receiver came back")
    finally:
        receiver.down()

    assert all(r.verified for r in receiver.received), "every request verifies with standardwebhooks"
    accepted = receiver.accepted()
    assert len({r.id for r in accepted}) == len(accepted), "each event accepted once"
    assert sorted(r.id for r in accepted) == sorted(e.message_id for e in OutboxEvent.select())
    ledgered = {(e.org.slug, e.seq, e.action) for e in LedgerEntry.select()}
    arrived = {(r.payload["org"], r.payload["data"]["seq"], r.payload["type"]) for r in accepted}
    assert arrived == ledgered, "every ledgered change has an event (org.create and token.create included)"
    assert {"org.create", "token.create", "member.join", "member.suspend"} <= {kind for _, _, kind in arrived}

    by_target: dict[str, list[int]] = {}
    for request in accepted:
        by_target.setdefault(request.payload["data"]["target"], []).append(request.payload["data"]["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_target.values()), by_target
    first_member = [r.payload["type"] for r in receiver.received if r.payload["data"].get("target") == first_join]
    assert first_member == ["member.join", "member.join", "member.suspend"], "the suspend waited for the join"

    failed = service.events("webhook.delivery.failed")
    assert refused["status"] == "HTTP 500" and refused["event_type"] == "member.join" and refused["attempt"] == 1
    assert {e["status"] for e in failed} == {"HTTP 500", "ConnectionError"}
    assert all(e["endpoint"] == receiver.url and e["next_attempt_at"] and e["webhook_id"] for e in failed)
    assert len({(e["webhook_id"], e["attempt"]) for e in failed}) == len(failed), "one line per failed attempt"
    assert "s3cr3t" not in service.log_text() and SECRET not in service.log_text()
    assert json.dumps(service.events("webhook.delivery.gave_up")) == "[]"
