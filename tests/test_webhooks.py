"""Webhooks: outbox events POSTed to a real HTTP server on 127.0.0.1, signed, retried with backoff."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from connectors.interface import ConfigError
from syncd import config
from syncd.service import webhooks
from syncd.store.models import OutboxEvent
from syncd.sync import orgs

NOW = datetime(2026, 6, 1, 12, 0, 0)
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class Receiver:
    """A webhook receiver: records every request and answers from a script (default 204)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers = receiver.script.pop(0) if receiver.script else (204, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/syncd"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "webhook.secret"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


def make_config(tmp_path, hooks: str) -> config.Config:
    path = tmp_path / "syncd.toml"
    path.write_text(hooks, encoding="utf-8")
    return config.load(path)


def hook_config(tmp_path, url, secret_file, extra="", server=""):
    head = f"[server]\n{server}\n\n" if server else ""
    return make_config(tmp_path, f'{head}[[webhooks]]\nurl = "{url}"\nsecret_file = "{secret_file.name}"\n{extra}')


def add_event(org, event_type="member.join", payload=None):
    return OutboxEvent.create(
        org=org,
        event_type=event_type,
        payload=json.dumps(payload or {"member": "alice@acme.com", "role": "member"}),
        created_at=NOW,
    )


def quiet_org(slug):
    """An org whose own ``org.create`` event is already delivered, for tests that count the events they add."""
    org = orgs.create(slug, slug.title())
    OutboxEvent.update(delivered_at=NOW).where(OutboxEvent.org == org).execute()
    return org


def reload(event):
    return OutboxEvent.get_by_id(event.id)


def test_event_is_posted_once_with_a_verifiable_standard_webhooks_signature(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    report = webhooks.deliver_due(hook_config(tmp_path, receiver.url, secret_file), now=NOW)
    assert report.delivered == [event.id]
    (request,) = receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert request["path"] == "/hooks/syncd" and headers["content-type"] == "application/json"
    assert headers["webhook-id"] == reload(event).message_id and headers["webhook-id"].startswith("msg_")
    assert Webhook(SECRET).verify(request["body"], headers) is not None
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request["body"]
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert json.loads(request["body"]) == {
        "type": "member.join",
        "timestamp": "2026-06-01T12:00:00.000000Z",
        "org": "acme",
        "data": {"member": "alice@acme.com", "role": "member"},
    }
    assert SECRET not in json.dumps(headers) and reload(event).delivered_at == NOW
    assert (
        webhooks.deliver_due(hook_config(tmp_path, receiver.url, secret_file), now=NOW + timedelta(hours=1)).delivered
        == []
    )
    assert len(receiver.requests) == 1


def test_failed_delivery_is_retried_with_growing_backoff_and_the_same_id(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    cfg = hook_config(tmp_path, receiver.url, secret_file)
    receiver.script = [(500, {}), (503, {}), (200, {})]
    assert webhooks.deliver_due(cfg, now=NOW).failed == [event.id]
    first = reload(event)
    assert first.attempts == 1 and first.next_attempt_at == NOW + timedelta(seconds=30)
    assert first.last_error == f"{receiver.url}: HTTP 500"
    assert webhooks.deliver_due(cfg, now=NOW + timedelta(seconds=29)).failed == []
    assert webhooks.deliver_due(cfg, now=NOW + timedelta(seconds=30)).failed == [event.id]
    second = reload(event)
    assert second.attempts == 2 and second.next_attempt_at == NOW + timedelta(seconds=90)
    assert webhooks.deliver_due(cfg, now=NOW + timedelta(seconds=90)).delivered == [event.id]
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {reload(event).message_id}
    assert len(receiver.requests) == 3 and reload(event).last_error is None


def test_retry_after_from_the_receiver_is_honoured_when_longer(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    receiver.script = [(429, {"Retry-After": "600"})]
    webhooks.deliver_due(hook_config(tmp_path, receiver.url, secret_file), now=NOW)
    assert reload(event).next_attempt_at == NOW + timedelta(seconds=600)


def test_delivery_gives_up_after_the_last_attempt_and_keeps_the_error(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    cfg = hook_config(tmp_path, receiver.url, secret_file)
    receiver.script = [(500, {})] * webhooks.MAX_ATTEMPTS
    moment = NOW
    for _ in range(webhooks.MAX_ATTEMPTS):
        webhooks.deliver_due(cfg, now=moment)
        moment += webhooks.MAX_BACKOFF
    final = reload(event)
    assert final.attempts == webhooks.MAX_ATTEMPTS and final.delivered_at is None and final.next_attempt_at is None
    assert final.last_error.startswith(f"gave up after {webhooks.MAX_ATTEMPTS} attempts")
    assert webhooks.deliver_due(cfg, now=moment + timedelta(days=30)).failed == []
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS


def test_a_redirect_is_not_followed_and_counts_as_a_failure(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    receiver.script = [(307, {"Location": "http://127.0.0.1:9/elsewhere"})]
    webhooks.deliver_due(hook_config(tmp_path, receiver.url, secret_file), now=NOW)
    assert reload(event).last_error.endswith("HTTP 307") and len(receiver.requests) == 1


def test_an_unreachable_receiver_error_names_the_endpoint_but_not_its_token(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    port = receiver.server.server_port
    receiver.close()
    url = f"http://127.0.0.1:{port}/hook?token=s3cr3t-query"
    webhooks.deliver_due(hook_config(tmp_path, url, secret_file), now=NOW)
    error = reload(event).last_error
    assert error.startswith(f"http://127.0.0.1:{port}/hook: ConnectionError") and "s3cr3t" not in error
    assert SECRET not in error and reload(event).attempts == 1


def test_an_unreachable_receiver_is_tried_once_per_round_not_once_per_event(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    events = [add_event(org) for _ in range(3)]
    port = receiver.server.server_port
    receiver.close()
    report = webhooks.deliver_due(hook_config(tmp_path, f"http://127.0.0.1:{port}/hook", secret_file), now=NOW)
    assert report.failed == [events[0].id] and report.deferred == [events[1].id, events[2].id]
    assert [reload(e).attempts for e in events] == [1, 0, 0]


def test_only_subscribed_events_and_orgs_are_sent(store, receiver, tmp_path, secret_file):
    acme, globex = orgs.create("acme", "Acme"), orgs.create("globex", "Globex")
    wanted = add_event(acme, "member.role")
    other_type = add_event(acme, "team.create")
    other_org = add_event(globex, "member.role")
    cfg = hook_config(tmp_path, receiver.url, secret_file, 'events = ["member.*"]\norgs = ["acme"]\n')
    report = webhooks.deliver_due(cfg, now=NOW)
    assert sorted(report.delivered) == sorted([wanted.id, other_type.id, other_org.id])
    assert [json.loads(r["body"])["type"] for r in receiver.requests] == ["member.role"]
    assert json.loads(receiver.requests[0]["body"])["org"] == "acme"


def test_a_missing_secret_fails_the_delivery_without_sending(store, receiver, tmp_path, monkeypatch):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    monkeypatch.delenv("SYNCD_TEST_WEBHOOK_SECRET", raising=False)
    cfg = make_config(tmp_path, f'[[webhooks]]\nurl = "{receiver.url}"\nsecret_env = "SYNCD_TEST_WEBHOOK_SECRET"\n')
    webhooks.deliver_due(cfg, now=NOW)
    assert "SYNCD_TEST_WEBHOOK_SECRET" in reload(event).last_error and receiver.requests == []


def test_an_event_claimed_by_another_replica_is_not_sent_twice(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    OutboxEvent.update(next_attempt_at=NOW + webhooks.CLAIM).where(OutboxEvent.id == event.id).execute()
    assert webhooks.deliver_due(hook_config(tmp_path, receiver.url, secret_file), now=NOW).delivered == []
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('url = "http://hooks.example.com/x"\nsecret_env = "S"\n', "webhooks[0].url: use an https:// URL"),
        ('url = "https://hooks.example.com/x"\n', "webhooks[0]: give exactly one of secret_file or secret_env"),
        ('url = "https://h/x"\nsecret_env = "S"\nsecret_file = "f"\n', "webhooks[0]: give exactly one"),
        ('url = "https://h/x"\nsecret_env = "S"\nsecret = "inline"\n', "webhooks[0].secret: unknown key"),
        ('url = "https://h/x"\nsecret_env = "S"\ntimeout = 0\n', "webhooks[0].timeout"),
    ],
)
def test_webhook_config_errors_name_the_key(tmp_path, table, named):
    with pytest.raises(ConfigError) as error:
        make_config(tmp_path, "[[webhooks]]\n" + table)
    assert str(error.value).startswith(named)


def test_webhook_secret_file_resolves_against_the_config_folder(tmp_path):
    cfg = make_config(tmp_path, '[[webhooks]]\nurl = "https://hooks.example.com/x"\nsecret_file = "s/hook"\n')
    assert cfg.webhooks[0].secret_file == str(tmp_path / "s" / "hook")


def test_backoff_doubles_up_to_its_cap():
    first = webhooks.first_backoff(config.Config())
    assert [webhooks.backoff(n, first).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert webhooks.backoff(30, first) == webhooks.MAX_BACKOFF


def test_the_first_backoff_is_a_setting_and_the_backoff_grows_from_it(store, receiver, tmp_path, secret_file):
    org = orgs.create("acme", "Acme")
    event = add_event(org)
    cfg = hook_config(tmp_path, receiver.url, secret_file, server='webhook_first_backoff = "2s"')
    receiver.script = [(500, {}), (500, {})]
    webhooks.deliver_due(cfg, now=NOW)
    assert reload(event).next_attempt_at == NOW + timedelta(seconds=2)
    webhooks.deliver_due(cfg, now=NOW + timedelta(seconds=2))
    assert reload(event).next_attempt_at == NOW + timedelta(seconds=6)


@pytest.mark.parametrize(
    ("server", "named"),
    [
        ('webhook_first_backoff = "0s"', "server.webhook_first_backoff: expected an interval like 30s"),
        ('webhook_first_backoff = "7h"', "server.webhook_first_backoff: expected 1s to 6h"),
        ("webhook_first_backoff = 30", "server.webhook_first_backoff: expected a string"),
        ('webhook_every = "2h"', "server.webhook_every: expected 1s to 1h"),
        ('webhook_every = "often"', "server.webhook_every: expected an interval like 30s"),
    ],
)
def test_webhook_timing_errors_name_the_key_and_the_range(tmp_path, server, named):
    with pytest.raises(ConfigError) as error:
        make_config(tmp_path, f"[server]\n{server}\n")
    assert str(error.value).startswith(named) and "\n" not in str(error.value)


def test_cli_delivers_due_events_and_reports_what_is_left(cli, store, database_url, receiver, tmp_path, secret_file):
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[[webhooks]]\nurl = "{receiver.url}"\nsecret_file = "{secret_file.name}"\n',
        encoding="utf-8",
    )
    org = quiet_org("acme")
    stuck = add_event(org)
    OutboxEvent.update(attempts=webhooks.MAX_ATTEMPTS, last_error="gave up").where(OutboxEvent.id == stuck.id).execute()
    for _ in range(3):
        add_event(org)
    status = cli("--config", str(path), "webhooks", "status", "--format", "json")
    assert status.code == 0 and json.loads(status.stdout)[0] | {"oldest": None} == {
        "org": "acme",
        "pending": 3,
        "given_up": 1,
        "oldest": None,
    }
    first = cli("--config", str(path), "webhooks", "deliver", "--format", "json")
    assert first.code == 0 and json.loads(first.stdout)["delivered"] == 3 and len(receiver.requests) == 3
    revived = cli("--config", str(path), "webhooks", "deliver", "--retry-given-up")
    assert (
        revived.code == 0
        and revived.stdout.startswith("delivered 1,")
        and "1 given-up events revived" in revived.stdout
    )
    after = cli("--config", str(path), "webhooks", "status", "--format", "json")
    assert json.loads(after.stdout) == []


def test_cli_deliver_exits_1_with_the_failure_on_one_line(cli, store, database_url, receiver, tmp_path, secret_file):
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[[webhooks]]\nurl = "{receiver.url}"\nsecret_file = "{secret_file.name}"\n',
        encoding="utf-8",
    )
    add_event(quiet_org("acme"))
    receiver.script = [(500, {})]
    result = cli("--config", str(path), "webhooks", "deliver")
    assert result.code == 1 and result.stdout.startswith("delivered 0, failed 1")
    assert result.stderr == f"syncd: error: webhook delivery failed: {receiver.url}: HTTP 500\n"
