"""The syncrepl controls (RFC 4533 §2) against bytes slapd 2.5 really sent, and the LDAP source's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.ldap import Settings, syncrepl
from syncd import config
from syncd.common.errors import ConfigError

COOKIE = b"rid=000,csn=20261125114641.526680Z#000000#000#000000"
# A syncIdSet with refreshDeletes TRUE and one UUID, sent by slapd with a session log after one delete (§2.5).
RECORDED_SYNC_ID_SET = (
    b"\xa3}\x04drid=000,csn=20261125114641.526680Z#000000#000#000000,delcsn=20261125114641.550636Z#000000#000#000000"
    b"\x01\x01\xff1\x12\x04\x10\xa0\x19S\x96}\x11\x10A\x93-\x0b\xa5\xc3\xa9\xeeb"
)
# A syncIdSet with refreshDeletes FALSE naming the one entry left, sent by slapd when the cookie is older than its
# session log: a present phase (§3.3.1).
RECORDED_PRESENT_SET = b"\xa3\x141\x12\x04\x10]\x8f\xfa\xb0\x86\xfe\x10A\x9f\xcd\xdbe\x18\r+\x99"
RECORDED_STATE_ADD = b'0\x15\n\x01\x01\x04\x10\xa0\x19T"}\x11\x10A\x93.\x0b\xa5\xc3\xa9\xeeb'
RECORDED_DONE = b"09\x044" + COOKIE + b"\x01\x01\xff"


def test_sync_request_control_is_ber_encoded_as_rfc_4533_section_2_2_says():
    oid, critical, value = syncrepl.request_control(None)
    assert (oid, critical, value) == ("1.3.6.1.4.1.4203.1.9.1.1", True, bytes.fromhex("3003 0a0101"))
    assert syncrepl.request_control(b"abc")[2] == bytes.fromhex("3008 0a0101 0403616263")


def test_sync_id_set_from_slapd_names_the_deleted_uuid():
    info = syncrepl.decode_info(RECORDED_SYNC_ID_SET)

    assert info.deleted_uuids == ["a0195396-7d11-1041-932d-0ba5c3a9ee62"]
    assert info.refresh_deletes is True and info.present_phase is False
    assert info.cookie is not None and info.cookie.startswith(b"rid=000,csn=")


def test_sync_id_set_of_a_present_phase_from_slapd_names_no_deletes():
    info = syncrepl.decode_info(RECORDED_PRESENT_SET)

    assert info.present_phase is True and info.deleted_uuids == [] and info.refresh_deletes is None


def test_sync_state_and_done_controls_from_slapd_decode():
    state = syncrepl.decode_state(RECORDED_STATE_ADD)
    done = syncrepl.decode_done(RECORDED_DONE)

    assert (state.state, state.entry_uuid) == (syncrepl.STATE_ADD, "a0195422-7d11-1041-932e-0ba5c3a9ee62")
    assert (done.cookie, done.refresh_deletes) == (COOKIE, True)
    assert syncrepl.decode_done(b"0\x00") == syncrepl.SyncDone(None, False)


def test_refresh_present_and_new_cookie_messages_decode():
    present = syncrepl.decode_info(b"\xa2\x03\x01\x01\x00")
    new_cookie = syncrepl.decode_info(b"\x80\x03abc")

    assert present.present_phase is True
    assert new_cookie.cookie == b"abc"


def ldap_config(tmp_path: Path, source: str) -> config.Config:
    text = f"""
[[orgs]]
slug = "acme"

[[sources]]
name = "corp-ldap"
org = "acme"
kind = "ldap"
{source}
"""
    path = tmp_path / "syncd.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


def test_config_accepts_an_ldap_source_with_a_url_list_and_resolves_the_password_file(tmp_path):
    loaded = ldap_config(
        tmp_path,
        'url = ["ldaps://dc1:636", "ldaps://dc2:636"]\nusers_base = "ou=people,dc=example,dc=org"\n'
        'bind_dn = "cn=syncd,dc=example,dc=org"\nbind_password_file = "secrets/ldap"\npage_size = 500\n'
        'attributes = { department = "ou" }',
    )

    settings = loaded.source("corp-ldap").connector
    assert isinstance(settings, Settings)
    assert settings.urls == ("ldaps://dc1:636", "ldaps://dc2:636")
    assert settings.bind_password_file == str(tmp_path / "secrets" / "ldap")
    assert settings.attributes == {"department": "ou"}


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ('url = "ldap://x"', "users_base"),
        ('url = "http://x"\nusers_base = "o=x"', "url"),
        ('url = "ldap://x"\nusers_base = "o=x"\nflavor = "novell"', "flavor"),
        ('url = "ldap://x"\nusers_base = "o=x"\nbind_dn = "cn=a"', "bind_dn: give bind_password_file"),
        ('url = "ldap://x"\nusers_base = "o=x"\nattributes = { shoe_size = "x" }', "attributes.shoe_size"),
        ('url = "ldaps://x"\nusers_base = "o=x"\nstart_tls = true', "start_tls"),
        ('url = "ldap://x"\nusers_base = "o=x"\npage_size = 0', "page_size"),
        ('url = "ldap://x"\nusers_base = "o=x"\nbind_password = "inline"', "bind_password"),
    ],
)
def test_invalid_ldap_settings_name_the_key(tmp_path, source, named):
    with pytest.raises(ConfigError, match=rf"^sources\[0\]\.{named}"):
        ldap_config(tmp_path, source)
