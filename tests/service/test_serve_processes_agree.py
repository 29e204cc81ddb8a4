"""``syncd serve --processes 2`` answers as one service: whichever HTTP process takes a request, the admin API and the
health checks say the same, a reload takes effect in all of them at one moment, and a killed supervisor leaves
nothing behind for the next start.

Requests go on new connections (``Connection: close``), so the kernel hands them to either process; each carries its
own ``X-Request-Id``, which the ``http.request`` line of the process that answered names, with its ``pid``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from syncd.service.prefork import remove_stale_workdirs
from syncd.store.lease import pid_namespace
from tests.service.conftest import service_config
from tests.service.scim_push import USER

PROCESSES = ("--processes", "2")


def _token(cli, config, scope: str) -> str:
    result = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", scope)
    assert result.code == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _source(name: str) -> str:
    return f'[[sources]]\nname = "{name}"\norg = "acme"\nkind = "file"\nschedule = "1h"\npath = "people.csv"\n\n'


def _ask(service, path: str, token: str | None = None) -> tuple[str, requests.Response]:
    """One request on a connection of its own; returns its request id and the answer."""
    request_id = uuid.uuid4().hex
    headers = {"Connection": "close", "X-Request-Id": request_id}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return request_id, requests.get(service.url(path), headers=headers, timeout=30)


def _answered_by(service, request_ids: set[str]) -> set[int]:
    return {e["pid"] for e in service.events("http.request") if e.get("request") in request_ids}


def _until_both_answered(service, children: set[int], ask) -> list:
    """Ask (``ask()`` returns (request id, result)) until both HTTP processes have answered, at least 20 times."""
    results, ids = [], set()
    while len(results) < 400:
        request_id, result = ask()
        ids.add(request_id)
        results.append(result)
        if len(results) >= 20 and _answered_by(service, ids) == children:
            return results
    raise AssertionError(f"only {_answered_by(service, ids)} of {children} answered")


def test_the_sources_list_says_running_whichever_process_answers(serve, tmp_path, cli):
    """The scheduled run is in the supervisor, which serves no HTTP: its HTTP processes read run state from the store
    (the source's lease), as a replica does about a run on another replica."""
    config = tmp_path / "syncd.toml"
    url = f"sqlite:///{tmp_path / 's.db'}"
    config.write_text(service_config(url, {"hr": "1h"}, server="shutdown_timeout = 1", folder=tmp_path))
    admin = _token(cli, config, "admin")
    service = serve(config, args=PROCESSES, SYNCD_TEST_STEPS="1", SYNCD_TEST_DELAY="20")
    service.wait_ready()
    children = {e["pid"] for e in service.wait_event("service.http_process.ready", count=2)}
    service.wait_event("source.run.start")  # a never-run source is due at start

    def state():
        request_id, answer = _ask(service, "/admin/v1/sources", admin)
        assert answer.status_code == 200, answer.text
        (hr,) = answer.json()
        return request_id, hr

    during = _until_both_answered(service, children, state)
    assert {hr["running"] for hr in during} == {True}
    assert {hr["last_run_at"] for hr in during} == {None}


def test_a_reload_fails_no_request_and_takes_effect_in_every_process_at_one_moment(serve, tmp_path, cli):
    """SCIM lookups and writes go on through five reloads (each adds a source) without one failed request; a client
    reading the sources list never sees an older config after a newer one, whichever process answers; once the
    supervisor says the reload is done, every process answers with the new config."""
    config = tmp_path / "syncd.toml"
    base = service_config(f"sqlite:///{tmp_path / 's.db'}", {"hr": "1h"}, folder=tmp_path)
    config.write_text(base)
    scim, admin = _token(cli, config, "scim"), _token(cli, config, "admin")
    service = serve(config, run=None, args=PROCESSES)
    service.wait_ready()
    children = {e["pid"] for e in service.wait_event("service.http_process.ready", count=2)}
    stop = threading.Event()
    failures: list[str] = []
    seen: list[int] = []

    def scim_client(client: int) -> int:
        sent = 0
        with requests.Session() as session:
            session.trust_env = False
            session.headers.update({"Authorization": f"Bearer {scim}", "Connection": "close"})
            while not stop.is_set():
                sent += 1
                try:
                    if sent % 2:
                        body = json.dumps({"schemas": [USER], "userName": f"h{client}-{sent}@acme.com"})
                        answer = session.post(
                            service.url("/scim/v2/Users"),
                            data=body,
                            headers={"Content-Type": "application/scim+json"},
                            timeout=60,
                        )
                        expected = 201
                    else:
                        answer = session.get(
                            service.url('/scim/v2/Users?filter=userName eq "h0-1@acme.com"'), timeout=60
                        )
                        expected = 200
                    if answer.status_code != expected:
                        failures.append(f"{answer.status_code}: {answer.text[:200]}")
                except requests.RequestException as error:
                    failures.append(repr(error))
        return sent

    def admin_client() -> None:
        while not stop.is_set():
            try:
                _, answer = _ask(service, "/admin/v1/sources", admin)
                seen.append(len(answer.json()))
            except (requests.RequestException, ValueError) as error:
                failures.append(repr(error))

    with ThreadPoolExecutor(4) as pool:
        sent = [pool.submit(scim_client, client) for client in range(3)]
        reader = pool.submit(admin_client)
        extra = ""
        for round_ in range(5):
            extra += _source(f"s{round_}")
            config.write_text(base + extra)
            service.signal(signal.SIGHUP)
            service.wait_event("config.reloaded", count=round_ + 1, where=lambda e: "pid" not in e)
        stop.set()
        reader.result()
        total = sum(future.result() for future in sent)
    assert failures == [], f"{len(failures)} of {total} SCIM requests failed during reloads: {failures[:5]}"
    assert len(set(seen)) >= 2, "the reader saw the reloads happen"
    assert seen == sorted(seen), "a client saw an older config after a newer one"

    def sources():
        request_id, answer = _ask(service, "/admin/v1/sources", admin)
        return request_id, sorted(source["name"] for source in answer.json())

    after = _until_both_answered(service, children, sources)
    assert all(names == ["hr", "s0", "s1", "s2", "s3", "s4"] for names in after)


def test_a_killed_supervisors_directory_is_removed_by_the_next_start(serve, tmp_path):
    """Its HTTP processes exit without it; the next ``syncd serve`` removes the directory it left (the one named
    after a live process stays), and a stopped one removes its own."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    temp = tmp_path / "tmp"
    temp.mkdir()
    alive = temp / f"syncd-serve-{pid_namespace()}-{os.getpid()}-keep"
    alive.mkdir()
    first = serve(config, run=None, args=PROCESSES, TMPDIR=str(temp))
    first.wait_ready()
    children = {e["pid"] for e in first.wait_event("service.http_process.ready", count=2)}
    (left,) = set(temp.glob("syncd-serve-*")) - {alive}
    first.signal(signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left.exists()

    second = serve(config, run=None, args=PROCESSES, TMPDIR=str(temp))
    second.wait_ready()
    second.wait_event("service.http_process.ready", count=2)
    assert not left.exists()
    assert alive.exists()
    (own,) = set(temp.glob("syncd-serve-*")) - {alive}
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert not own.exists()


def test_only_directories_of_this_users_dead_supervisors_in_this_pid_namespace_are_removed(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = finished.pid  # a pid that has just ended
    here = pid_namespace()
    left = tmp_path / f"syncd-serve-{here}-{dead}-abc"
    names = [f"syncd-serve-{here}-{os.getpid()}-abc", f"syncd-serve-1-{dead}-abc", "syncd-serve-abc123", "other"]
    for path in (left, *(tmp_path / name for name in names)):
        path.mkdir()
    assert remove_stale_workdirs(tmp_path) == [left]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names)


def test_a_process_that_cannot_prepare_in_time_takes_the_committed_config_at_its_next_request(serve, tmp_path, cli):
    """An HTTP process stopped (SIGSTOP) during a reload does not hold it up past the wait: the supervisor commits,
    says which process was late, and that process answers with the new config as soon as it runs again."""
    config = tmp_path / "syncd.toml"
    base = service_config(f"sqlite:///{tmp_path / 's.db'}", {"hr": "1h"}, folder=tmp_path)
    config.write_text(base)
    admin = _token(cli, config, "admin")
    service = serve(config, run=None, args=PROCESSES)
    service.wait_ready()
    children = {e["pid"] for e in service.wait_event("service.http_process.ready", count=2)}
    stopped = min(children)
    os.kill(stopped, signal.SIGSTOP)
    try:
        config.write_text(base + _source("s0"))
        service.signal(signal.SIGHUP)
        (late,) = service.wait_event("config.reload.late", timeout=60)
        assert late["child_pids"] == str(stopped)
        service.wait_event("config.reloaded", where=lambda e: "pid" not in e)
    finally:
        os.kill(stopped, signal.SIGCONT)

    def sources():
        request_id, answer = _ask(service, "/admin/v1/sources", admin)
        return request_id, sorted(source["name"] for source in answer.json())

    assert all(names == ["hr", "s0"] for names in _until_both_answered(service, children, sources))
