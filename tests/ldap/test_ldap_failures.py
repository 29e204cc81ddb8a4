"""Failures of a real slapd read: each is one line naming the source, the server and what to check, never the
password, and no partial read is ever returned as complete."""

from __future__ import annotations

import gc

import pytest

import connectors.ldap.reader as reader_module
from connectors.interface import Snapshot
from connectors.ldap import Connector
from syncd.common.errors import ConnectorError
from tests.ldap.directory import GROUPS, SUFFIX, SYNCD_PASSWORD
from tests.ldap.slapd import free_port


def read_error(settings) -> str:
    with pytest.raises(ConnectorError) as caught:
        Connector("hr-ldap", settings).read(None)
    message = str(caught.value)
    assert "\n" not in message
    assert SYNCD_PASSWORD not in message
    assert message.startswith("source hr-ldap: ")
    return message


def test_bad_bind_fails_naming_the_server_and_the_key_to_check_but_not_the_password(slapd, settings_for, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password", encoding="utf-8")

    message = read_error(settings_for(slapd, bind_password_file=str(wrong)))

    assert "invalid credentials" in message
    assert slapd.url in message and "bind_password_file" in message
    assert "not-the-password" not in message


def test_missing_password_variable_is_named(slapd, settings_for, monkeypatch):
    monkeypatch.delenv("SYNCD_TEST_LDAP_PASSWORD", raising=False)

    message = read_error(settings_for(slapd, bind_password_file=None, bind_password_env="SYNCD_TEST_LDAP_PASSWORD"))

    assert "SYNCD_TEST_LDAP_PASSWORD" in message


def test_unreachable_servers_are_all_named(settings_for, slapd):
    dead = [f"ldap://127.0.0.1:{free_port()}", f"ldap://127.0.0.1:{free_port()}"]

    message = read_error(settings_for(slapd, url=dead))

    assert all(url in message for url in dead)
    assert "check url" in message


def test_first_url_dead_fails_over_to_the_next(slapd, settings_for):
    settings = settings_for(slapd, url=[f"ldap://127.0.0.1:{free_port()}", slapd.url])

    snapshot = Connector("hr-ldap", settings).read(None)

    assert isinstance(snapshot, Snapshot) and snapshot.complete
    assert {u.user_name for u in snapshot.users} >= {"alice", "bob"}


def test_start_tls_refused_by_a_plain_server_is_a_tls_error(slapd, settings_for):
    message = read_error(settings_for(slapd, start_tls=True))

    assert "StartTLS" in message and "ca_file" in message


def test_ldaps_to_a_plain_port_is_a_tls_error(slapd, settings_for):
    message = read_error(settings_for(slapd, url=slapd.url.replace("ldap://", "ldaps://")))

    assert slapd.url.replace("ldap://", "ldaps://") in message


def test_size_limit_exceeded_fails_instead_of_returning_a_short_read(slapd, settings_for):
    message = read_error(settings_for(slapd, bind_dn=f"cn=limited,{SUFFIX}"))

    assert "sizeLimitExceeded" in message and "limits" in message


def test_missing_base_fails_naming_it(slapd, settings_for):
    message = read_error(settings_for(slapd, users_base=f"ou=nobody,{SUFFIX}"))

    assert f"ou=nobody,{SUFFIX}" in message and "noSuchObject" in message


def test_invalid_filter_fails_naming_it(slapd, settings_for):
    message = read_error(settings_for(slapd, users_filter="(objectClass=inetOrgPerson"))

    assert "invalid filter" in message


def test_base_held_by_another_server_fails_with_the_referral(slapd, settings_for):
    message = read_error(settings_for(slapd, users_base=f"uid=x,ou=branch,ou=remote,{SUFFIX}"))

    assert "referral" in message and "ldap://branch.example.org" in message


def test_slapd_killed_mid_search_raises_and_returns_no_snapshot(fresh_slapd, settings_for, monkeypatch):
    """The server dies after the first page of users: the read must fail, not return the entries it got."""
    settings = settings_for(fresh_slapd, page_size=2)
    original = reader_module.DirectoryReader.entries

    def entries_then_crash(self, what, *args, **kwargs):
        for count, entry in enumerate(original(self, what, *args, **kwargs), start=1):
            yield entry
            if what == "users" and count == settings.page_size:
                fresh_slapd.kill()

    monkeypatch.setattr(reader_module.DirectoryReader, "entries", entries_then_crash)

    message = read_error(settings)

    assert "after 2 entries" in message and fresh_slapd.url in message and "nothing was applied" in message


def test_groups_base_missing_fails_after_users_were_read(slapd, settings_for):
    message = read_error(settings_for(slapd, groups_base=f"ou=missing,{GROUPS}"))

    assert "ou=missing" in message


def test_ldaps_with_the_ca_file_reads_and_without_it_fails_on_the_certificate(tls_slapd, settings_for):
    server, ca = tls_slapd

    snapshot = Connector("hr-ldap", settings_for(server, url=server.ldaps_url, ca_file=str(ca))).read(None)
    message = read_error(settings_for(server, url=server.ldaps_url))

    assert isinstance(snapshot, Snapshot) and snapshot.complete
    assert "certificate verify failed" in message and "ca_file" in message


def test_start_tls_with_the_ca_file_reads(tls_slapd, settings_for):
    server, ca = tls_slapd

    snapshot = Connector("hr-ldap", settings_for(server, start_tls=True, ca_file=str(ca))).read(None)

    assert isinstance(snapshot, Snapshot) and {u.user_name for u in snapshot.users} >= {"alice"}


def test_start_tls_with_an_untrusted_certificate_fails(tls_slapd, settings_for):
    server, _ = tls_slapd

    message = read_error(settings_for(server, start_tls=True))

    assert "StartTLS" in message and "ca_file" in message


def test_server_that_stops_answering_mid_search_times_out_with_a_clear_line(fresh_slapd, settings_for, monkeypatch):
    settings = settings_for(fresh_slapd, page_size=2, timeout=1.0)
    original = reader_module.DirectoryReader.entries

    def entries_then_freeze(self, what, *args, **kwargs):
        for count, entry in enumerate(original(self, what, *args, **kwargs), start=1):
            yield entry
            if what == "users" and count == settings.page_size:
                fresh_slapd.freeze()

    monkeypatch.setattr(reader_module.DirectoryReader, "entries", entries_then_freeze)
    try:
        message = read_error(settings)
    finally:
        fresh_slapd.thaw()

    assert "after 2 entries" in message and "timeout" in message


def test_the_garbage_collector_runs_again_after_a_read_even_a_failed_one(slapd, settings_for):
    assert gc.isenabled()
    Connector("hr-ldap", settings_for(slapd)).read(None)
    assert gc.isenabled()
    read_error(settings_for(slapd, groups_base=f"ou=missing,{GROUPS}"))
    assert gc.isenabled()


def test_unreadable_ca_file_is_named(tls_slapd, settings_for, tmp_path):
    server, _ = tls_slapd

    message = read_error(settings_for(server, url=server.ldaps_url, ca_file=str(tmp_path / "missing.pem")))

    assert "ca_file" in message and "missing.pem" in message
