"""Active Directory parsing on recorded responses (no AD is available here): objectGUID keys, userAccountControl,
ranged member retrieval (``member;range=0-1499``), harmless partition referrals, and the USN watermark's
invocationId check. The recorded entries have the shape ldap3 gives for an AD answer read without a schema."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from ldap3.utils.ciDict import CaseInsensitiveDict

from connectors.interface import Delta
from connectors.ldap import Settings, incremental
from connectors.ldap.reader import DirectoryReader
from connectors.ldap.vendor import ad, detect

DOMAIN = "DC=corp,DC=example,DC=com"
USERS = f"OU=Staff,{DOMAIN}"
GROUPS = f"OU=Groups,{DOMAIN}"

# objectGUID bytes as AD sends them, and the canonical form ADUC / Get-ADUser print: the first three fields are
# little-endian ([MS-DTYP] §2.3.4.2), the last eight bytes are in order.
ALICE_GUID = bytes.fromhex("0c1e3fe69c4a2a4d86f68bdf42e4c4c7")
ALICE_KEY = "e63f1e0c-4a9c-4d2a-86f6-8bdf42e4c4c7"
BOB_GUID = bytes.fromhex("11223344556677888899aabbccddeeff")
BOB_KEY = "44332211-6655-8877-8899-aabbccddeeff"
ADMINS_GUID = bytes.fromhex("a1a2a3a4b1b2c1c2d1d2e1e2e3e4e5e6")
ADMINS_KEY = "a4a3a2a1-b2b1-c2c1-d1d2-e1e2e3e4e5e6"
BIG_GUID = bytes.fromhex("00000000000000000000000000000b19")
DAVE_GUID = bytes.fromhex("d0" * 16)
INVOCATION = bytes.fromhex("5f2d7a4c3b1e9a4f8d6c2b1a0f9e8d7c")

ROOT_DSE = {
    "supportedCapabilities": ["1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1670"],
    "defaultNamingContext": [DOMAIN],
    "dnsHostName": ["DC1.corp.example.com"],
    "dsServiceName": [f"CN=NTDS Settings,CN=DC1,CN=Servers,CN=HQ,CN=Sites,CN=Configuration,{DOMAIN}"],
    "highestCommittedUSN": ["120045"],
}


def entry(dn: str, guid: bytes, **attributes: Sequence[Any]) -> dict[str, Any]:
    text = CaseInsensitiveDict({name: list(values) for name, values in attributes.items()})
    raw = CaseInsensitiveDict({name: [str(v).encode() for v in values] for name, values in attributes.items()})
    text["objectGUID"] = [guid]
    raw["objectGUID"] = [guid]
    return {"type": "searchResEntry", "dn": dn, "attributes": text, "raw_attributes": raw}


def reference(*uris: str) -> dict[str, Any]:
    return {"type": "searchResRef", "uri": list(uris)}


BIG_GROUP_MEMBERS = [f"CN=User {n:04d},{USERS}" for n in range(3200)]


class RecordedSession:
    """Answers the connector's searches from recorded AD responses, keyed by (base, attribute or filter part);
    every question is kept in ``asked`` so a test can check what was requested."""

    def __init__(self, root_dse: dict[str, list[Any]], answers: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        self.root_dse = root_dse
        self.answers = answers
        self.asked: list[tuple[str, str, tuple[str, ...]]] = []

    def _answer(self, base: str, search_filter: str, attributes: Sequence[str]) -> list[dict[str, Any]]:
        self.asked.append((base, search_filter, tuple(attributes)))
        for (wanted_base, marker), response in reversed(self.answers.items()):  # later recordings are narrower
            if base == wanted_base and (marker in search_filter or marker in attributes):
                return response
        raise AssertionError(f"no recorded answer for {base} {search_filter} {attributes}")

    def paged(self, what, base, search_filter, scope, attributes, controls=()):
        yield from self._answer(base, search_filter, attributes)

    def search(self, what, base, search_filter, scope, attributes, controls=(), accept=()):
        return self._answer(base, search_filter, attributes)


def ad_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"url": "ldaps://dc1.corp.example.com", "users_base": USERS, "groups_base": GROUPS}
    values.update(overrides)
    return Settings(**values)


def recorded_directory() -> dict[tuple[str, str], list[dict[str, Any]]]:
    big = entry(f"CN=All Staff,{GROUPS}", BIG_GUID, cn=["All Staff"])
    big["attributes"]["member;range=0-1499"] = BIG_GROUP_MEMBERS[:1500]
    return {
        (USERS, "objectCategory=person"): [
            entry(
                f"CN=Alice Archer,{USERS}",
                ALICE_GUID,
                sAMAccountName=["alice"],
                mail=["alice@corp.example.com"],
                displayName=["Alice Archer"],
                department=["IT"],
                userAccountControl=["512"],
            ),
            entry(
                f"CN=Bob Baker,{USERS}",
                BOB_GUID,
                sAMAccountName=["bob"],
                userAccountControl=["514"],
                manager=[f"CN=Alice Archer,{USERS}"],
            ),
            reference(f"ldap://DomainDnsZones.corp.example.com/DC=DomainDnsZones,{DOMAIN}"),
            reference(f"ldap://corp.example.com/CN=Configuration,{DOMAIN}"),
        ],
        (GROUPS, "objectClass=group"): [
            entry(f"CN=IT Admins,{GROUPS}", ADMINS_GUID, cn=["IT Admins"], member=[f"CN=Alice Archer,{USERS}"]),
            big,
        ],
        (f"CN=All Staff,{GROUPS}", "member;range=1500-*"): [
            {
                "type": "searchResEntry",
                "dn": f"CN=All Staff,{GROUPS}",
                "attributes": {"member;range=1500-2999": BIG_GROUP_MEMBERS[1500:3000]},
            }
        ],
        (f"CN=All Staff,{GROUPS}", "member;range=3000-*"): [
            {
                "type": "searchResEntry",
                "dn": f"CN=All Staff,{GROUPS}",
                "attributes": {"member;range=3000-*": [*BIG_GROUP_MEMBERS[3000:], f"CN=Bob Baker,{USERS}"]},
            }
        ],
    }


def test_object_guid_is_shown_in_canonical_mixed_endian_form():
    assert ad.guid_text([ALICE_GUID]) == ALICE_KEY
    assert ad.guid_text([BOB_GUID]) == BOB_KEY
    assert ad.guid_text([b"short"]) == ""


@pytest.mark.parametrize(("control", "disabled"), [("512", False), ("514", True), ("66050", True), ("66048", False)])
def test_user_account_control_bit_two_disables(control, disabled):
    assert ad.is_account_disabled({"useraccountcontrol": [control]}) is disabled


def test_active_directory_is_detected_from_its_capabilities():
    assert detect(ROOT_DSE, USERS) == "ad"
    assert detect({"objectClass": ["top", "OpenLDAProotDSE"]}, "ou=people") == "openldap"
    assert detect({"vendorName": ["389 Project"]}, "cn=users,cn=accounts,dc=ipa,dc=test") == "freeipa"
    assert detect({"vendorName": ["389 Project"]}, "ou=people,dc=example") == "389ds"


def test_ad_snapshot_maps_guid_keys_disabled_accounts_managers_and_ranged_members():
    session = RecordedSession(ROOT_DSE, recorded_directory())
    reader = DirectoryReader(session, ad.FLAVOR, ad_settings())  # type: ignore[arg-type]

    snapshot = reader.snapshot(None)

    users = {u.user_name: u for u in snapshot.users}
    groups = {g.display_name: g for g in snapshot.groups}
    assert snapshot.complete, snapshot.problems  # the partition referrals are not parts of the domain's users
    assert (users["alice"].key, users["alice"].active, users["alice"].department) == (ALICE_KEY, True, "IT")
    assert (users["bob"].key, users["bob"].active, users["bob"].manager_key) == (BOB_KEY, False, ALICE_KEY)
    assert groups["IT Admins"].member_keys == {ALICE_KEY}
    assert groups["All Staff"].member_keys == {BOB_KEY}
    assert groups["All Staff"].attributes["unresolved_members"] == 3200  # users outside the recorded OU
    assert [a for (_, _, a) in session.asked if any("range" in x for x in a)] == [
        ("member;range=1500-*",),
        ("member;range=3000-*",),
    ]


def test_collect_ranged_without_a_range_returns_the_plain_values():
    assert ad.collect_ranged({"member": ["a", "b"]}, "member", lambda _: {}) == ["a", "b"]


def test_collect_ranged_fails_when_the_server_drops_the_next_slice():
    with pytest.raises(ValueError, match="range=2-"):
        ad.collect_ranged({"member;range=0-1": ["a", "b"]}, "member", lambda _: {"member": []})


def test_a_referral_to_another_domain_makes_the_ad_snapshot_incomplete():
    answers = recorded_directory()
    answers[(USERS, "objectCategory=person")].append(reference(f"ldap://emea.corp.example.com/OU=EMEA,{USERS}"))
    reader = DirectoryReader(RecordedSession(ROOT_DSE, answers), ad.FLAVOR, ad_settings())  # type: ignore[arg-type]

    snapshot = reader.snapshot(None)

    assert not snapshot.complete and "emea.corp.example.com" in snapshot.problems[0]


def usn_session(root_dse: dict[str, list[Any]], invocation: bytes) -> RecordedSession:
    answers = recorded_directory()
    answers[(ROOT_DSE["dsServiceName"][0], "invocationId")] = [
        {
            "type": "searchResEntry",
            "dn": ROOT_DSE["dsServiceName"][0],
            "attributes": {},
            "raw_attributes": {"invocationId": [invocation]},
        }
    ]
    # Changes are searched in the whole domain: Dave, moved to OU=Leavers, is outside users_base now.
    moved = entry(f"CN=Dave Dunn,OU=Leavers,{DOMAIN}", DAVE_GUID, sAMAccountName=["dave"], userAccountControl=["512"])
    answers[(DOMAIN, "(objectClass=user))(uSNChanged>=120001)")] = [
        *answers[(USERS, "objectCategory=person")][1:2],
        moved,
    ]
    answers[(DOMAIN, "(objectClass=group)(uSNChanged>=120001)")] = []
    answers[(DOMAIN, "isDeleted=TRUE")] = [
        entry(
            f"CN=Carol\\0ADEL:5e1f,CN=Deleted Objects,{DOMAIN}",
            bytes.fromhex("c0" * 16),
            objectClass=["top", "person", "organizationalPerson", "user"],
        ),
    ]
    answers[(USERS, "(CN=Alice Archer)")] = answers[(USERS, "objectCategory=person")][:1]
    return RecordedSession(root_dse, answers)


def previous_position(invocation: bytes = INVOCATION, server: str = "dc1.corp.example.com") -> dict[str, Any]:
    return ad.UsnPosition(server, ad.guid_text([invocation]), 120000).as_dict()


def test_usn_delta_on_the_same_dc_reports_changes_moves_out_of_scope_and_tombstones():
    session = usn_session(ROOT_DSE, INVOCATION)
    reader = DirectoryReader(session, ad.FLAVOR, ad_settings())  # type: ignore[arg-type]

    changes = incremental.read_changes(reader, "usn", previous_position())

    assert changes is not None
    delta, following = changes
    assert isinstance(delta, Delta)
    assert [(u.user_name, u.active, u.manager_key) for u in delta.users] == [("bob", False, ALICE_KEY)]
    assert delta.removed_user_keys == [ad.guid_text([DAVE_GUID]), ad.guid_text([bytes.fromhex("c0" * 16)])]
    assert following["usn"] == 120045
    assert any("uSNChanged>=120001" in f for (_, f, _) in session.asked)


def test_a_dc_restored_from_backup_forces_a_full_read():
    restored = bytes.fromhex("99" * 16)
    reader = DirectoryReader(usn_session(ROOT_DSE, restored), ad.FLAVOR, ad_settings())  # type: ignore[arg-type]

    assert incremental.read_changes(reader, "usn", previous_position()) is None


def test_a_watermark_from_another_dc_forces_a_full_read():
    reader = DirectoryReader(usn_session(ROOT_DSE, INVOCATION), ad.FLAVOR, ad_settings())  # type: ignore[arg-type]

    assert incremental.read_changes(reader, "usn", previous_position(server="dc2.corp.example.com")) is None


def test_usn_going_backwards_is_a_reason_for_a_full_read():
    now = ad.UsnPosition("dc1", "x", 10)

    assert ad.full_read_reason(ad.UsnPosition("dc1", "x", 11), now) is not None
    assert ad.full_read_reason(ad.UsnPosition("dc1", "x", 10), now) is None


def test_usn_start_position_is_recorded_with_the_snapshot():
    reader = DirectoryReader(usn_session(ROOT_DSE, INVOCATION), ad.FLAVOR, ad_settings())  # type: ignore[arg-type]

    position = incremental.start_position(reader, "usn")

    assert position == {"server": "dc1.corp.example.com", "invocation_id": ad.guid_text([INVOCATION]), "usn": 120045}
    assert json.loads(json.dumps(position)) == position
