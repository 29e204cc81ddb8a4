"""The file connector: CSV and JSON HR exports in, records out; broken rows named by line, never silently dropped."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import file as file_connector
from connectors.file import Connector, Settings
from connectors.interface import ConfigError, ConnectorError, parse_settings


def read(path: Path, **settings):
    return Connector("hr", Settings(path=str(path), **settings)).read(None)


def write(tmp_path: Path, text: str, name: str = "export.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def by_key(snapshot):
    return {user.key: user for user in snapshot.users}


def test_hr_export_with_aliased_headers_becomes_user_records(tmp_path):
    path = write(
        tmp_path,
        "Employee ID,First Name,Last Name,E-Mail,Job Title,Dept.,Manager,Status,Groups,Role,Location\n"
        "1001,Alice,Smith,Alice@Acme.com,CTO,Engineering,,Active,Engineering;IT Admins,admin,Berlin\n"
        "1002,Bob,Jones,bob@acme.com,Engineer,Engineering,alice@acme.com,yes,Engineering|Oncall,,Paris\n"
        "1003,Carol,King,carol@acme.com,Engineer,Engineering,1001,Terminated,,,\n",
    )
    snapshot = read(path)
    assert snapshot.complete and snapshot.problems == []
    users = by_key(snapshot)
    assert set(users) == {"1001", "1002", "1003"}
    alice = users["1001"]
    assert alice.email == "Alice@Acme.com" and alice.user_name == "Alice@Acme.com"
    assert (alice.given_name, alice.family_name, alice.display_name) == ("Alice", "Smith", "Alice Smith")
    assert (alice.title, alice.department, alice.employee_number) == ("CTO", "Engineering", "1001")
    assert alice.attributes == {"role": "admin", "Location": "Berlin"}
    assert alice.groups == ("Engineering", "IT Admins") and alice.active
    assert users["1002"].manager_key == "1001" and users["1002"].groups == ("Engineering", "Oncall")
    assert users["1003"].manager_key == "1001" and users["1003"].active is False
    groups = {group.key: group for group in snapshot.groups}
    assert groups["Engineering"].member_keys == {"1001", "1002"}
    assert groups["IT Admins"].member_keys == {"1001"} and groups["Oncall"].display_name == "Oncall"


def test_headers_match_whatever_their_case_and_punctuation(tmp_path):
    path = write(tmp_path, "EMAIL_ADDRESS,display-name,USER PRINCIPAL NAME,is_active\na@acme.com,A B,ab@corp,0\n")
    (user,) = read(path).users
    assert (user.email, user.display_name, user.user_name, user.active) == ("a@acme.com", "A B", "ab@corp", False)


def test_without_employee_id_the_key_is_the_lowercased_email_or_user_name(tmp_path):
    path = write(tmp_path, "email,username\nAlice@Acme.com,alice\n,Bob.Admin\n")
    assert set(by_key(read(path))) == {"alice@acme.com", "bob.admin"}


def test_bulk_invite_file_with_only_emails_and_roles(tmp_path):
    path = write(tmp_path, "email,role\nnew@acme.com,member\nboss@acme.com,owner\n")
    users = by_key(read(path))
    assert users["boss@acme.com"].attributes["role"] == "owner" and users["new@acme.com"].active


def test_utf8_byte_order_mark_and_non_ascii_names_are_read(tmp_path):
    path = write(tmp_path, "\ufeffEmail,Name\nzoe@acme.com,Zoë Ångström\n")
    (user,) = read(path).users
    assert user.email == "zoe@acme.com" and user.display_name == "Zoë Ångström"


def test_semicolon_delimited_export_is_detected_from_its_header(tmp_path):
    path = write(tmp_path, 'email;name;groups\na@acme.com;A;"X;Y"\n')
    (user,) = read(path).users
    assert user.display_name == "A" and user.groups == ("X", "Y")


def test_quoted_fields_with_commas_and_newlines_keep_line_numbers_right(tmp_path):
    path = write(tmp_path, 'email,title\na@acme.com,"Head of R&D,\nBerlin"\n,missing\n')
    snapshot = read(path)
    assert by_key(snapshot)["a@acme.com"].title == "Head of R&D,\nBerlin"
    assert snapshot.problems == ["line 4: no email and no user name; row skipped"]


def test_broken_rows_name_their_line_and_make_the_snapshot_incomplete(tmp_path):
    path = write(
        tmp_path,
        "employee id,email,active\n"
        "1,a@acme.com,true\n"
        "2,,true\n"
        "3,c@acme.com,maybe\n"
        "1,d@acme.com,true\n"
        "5,e@acme.com\n"
        "6,f@acme.com,no\n",
    )
    snapshot = read(path)
    assert not snapshot.complete
    assert [p.split(":")[0] for p in snapshot.problems] == ["line 3", "line 4", "line 5", "line 6"]
    assert "maybe" in snapshot.problems[1] and "already used by line 2" in snapshot.problems[2]
    assert set(by_key(snapshot)) == {"1", "6"}
    assert by_key(snapshot)["1"].email == "a@acme.com"


def test_unterminated_quote_stops_the_file_there_and_marks_it_incomplete(tmp_path):
    path = write(tmp_path, 'email,name\na@acme.com,A\nb@acme.com,"B\nc@acme.com,C\n')
    snapshot = read(path)
    assert not snapshot.complete and snapshot.problems[0].startswith("line 3: cannot parse")
    assert set(by_key(snapshot)) == {"a@acme.com"}


def test_not_an_email_address_is_a_broken_row(tmp_path):
    snapshot = read(write(tmp_path, "email\nalice\n"))
    assert snapshot.problems == ["line 2: email 'alice' is not an address; row skipped"] and snapshot.users == []


def test_blank_lines_are_not_rows(tmp_path):
    snapshot = read(write(tmp_path, "email\n\na@acme.com\n\n,\n"))
    assert snapshot.complete and len(snapshot.users) == 1


def test_unresolvable_manager_is_kept_as_an_attribute_only(tmp_path):
    (user,) = read(write(tmp_path, "email,manager\na@acme.com,ceo@elsewhere.com\n")).users
    assert user.manager_key is None and user.attributes["manager"] == "ceo@elsewhere.com"


def test_group_names_differing_only_in_case_are_one_group(tmp_path):
    snapshot = read(write(tmp_path, "email,groups\na@acme.com,Engineering\nb@acme.com,engineering ; Ops\n"))
    groups = {g.key: g.member_keys for g in snapshot.groups}
    assert groups == {"Engineering": {"a@acme.com", "b@acme.com"}, "Ops": {"b@acme.com"}}
    assert by_key(snapshot)["b@acme.com"].groups == ("Engineering", "Ops")


def test_cursor_is_a_content_digest_and_an_unchanged_file_still_returns_the_snapshot(tmp_path):
    path = write(tmp_path, "email\na@acme.com\n")
    first = read(path)
    again = Connector("hr", Settings(path=str(path))).read(first.cursor)
    assert first.cursor is not None and first.cursor.startswith("sha256:")
    assert again.cursor == first.cursor and again.users == first.users
    path.write_text("email\na@acme.com\nb@acme.com\n", encoding="utf-8")
    changed = read(path)
    assert changed.cursor != first.cursor and len(changed.users) == 2


def test_missing_file_raises_an_error_naming_source_and_path(tmp_path):
    with pytest.raises(ConnectorError) as error:
        read(tmp_path / "gone.csv")
    message = str(error.value)
    assert message.startswith("source hr: ") and "gone.csv" in message and "file not found" in message


def test_unreadable_path_raises_an_error_naming_the_path_and_the_fix(tmp_path):
    parent = write(tmp_path, "email\n")
    with pytest.raises(ConnectorError, match=r"cannot read it \(Not a directory\); check the path"):
        read(parent / "export.csv")


def test_a_file_still_being_written_on_every_read_is_refused_rather_than_read_half(tmp_path, monkeypatch):
    """The copy of the open handle is replaced by one that lets an exporter append in the middle of every read."""
    path = write(tmp_path, "email\na@acme.com\n")

    def read_while_exporter_appends(handle):
        yield handle.read(6)
        with open(path, "a", encoding="utf-8") as exporter:
            exporter.write("b@acme.com\n")
        yield handle.read()

    monkeypatch.setattr(file_connector, "_chunks", read_while_exporter_appends)
    with pytest.raises(ConnectorError, match="changed while it was read, twice"):
        read(path)


def test_a_file_swapped_in_place_during_a_read_is_read_again_whole(tmp_path, monkeypatch):
    """The first copy of the open handle is interrupted halfway by the exporter rewriting the file in place (the
    2,000-person export becomes the next day's, one person fewer); the connector must notice and read again."""
    people = [f"p{i}@acme.com" for i in range(2000)]
    path = write(tmp_path, "email\n" + "".join(f"{p}\n" for p in people))
    swaps = []

    def read_during_a_rewrite(handle):
        yield handle.read(20_000)
        if not swaps:
            with open(path, "r+", encoding="utf-8") as exporter:
                exporter.write("email\n" + "".join(f"{p}\n" for p in people[1:]))
                exporter.truncate()
            swaps.append(True)
        yield handle.read()

    monkeypatch.setattr(file_connector, "_chunks", read_during_a_rewrite)
    snapshot = read(path)
    assert swaps and snapshot.complete, snapshot.problems
    assert sorted(u.email for u in snapshot.users) == sorted(people[1:])


def test_a_directory_instead_of_a_file_raises(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ConnectorError, match="is a directory"):
        read(tmp_path / "dir.csv")


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_file_raises_rather_than_claiming_nobody_exists(tmp_path, text):
    with pytest.raises(ConnectorError, match="no header line"):
        read(write(tmp_path, text))


def test_an_unparsable_header_raises(tmp_path):
    with pytest.raises(ConnectorError, match="cannot parse the header line"):
        read(write(tmp_path, 'email,"name\n'))


def test_file_without_email_or_user_name_column_raises_naming_its_headers(tmp_path):
    with pytest.raises(ConnectorError, match="no email or user name column; the header has: Name, Dept"):
        read(write(tmp_path, "Name,Dept\nA,B\n"))


def test_two_columns_meaning_one_field_are_refused_until_columns_picks_one(tmp_path):
    path = write(tmp_path, "Email,Work Email,Name\na@home.net,a@acme.com,A\n")
    with pytest.raises(ConnectorError, match="both mean email"):
        read(path)
    (user,) = read(path, columns={"email": "Work Email"}).users
    assert user.email == "a@acme.com" and user.attributes == {"Email": "a@home.net"}


def test_undecodable_bytes_raise_naming_the_line_and_the_encoding_setting(tmp_path):
    path = write(tmp_path, "email,name\na@acme.com,Ren\xe9\n", encoding="cp1252")
    with pytest.raises(ConnectorError, match=r"line 2 is not valid utf-8.*encoding"):
        read(path)
    (user,) = read(path, encoding="cp1252").users
    assert user.display_name == "René"


def test_json_list_of_users_uses_the_same_field_names(tmp_path):
    path = write(
        tmp_path,
        json.dumps(
            [
                {"employeeId": 7, "email": "a@acme.com", "firstName": "A", "active": False, "groups": ["X", "Y"]},
                {"mail": "b@acme.com", "manager": "a@acme.com", "role": "admin", "costCenter": 12},
            ]
        ),
        name="people.json",
    )
    snapshot = read(path)
    assert snapshot.complete
    users = by_key(snapshot)
    assert users["7"].active is False and users["7"].groups == ("X", "Y") and users["7"].employee_number == "7"
    assert users["b@acme.com"].manager_key == "7"
    assert users["b@acme.com"].attributes == {"role": "admin", "costCenter": 12, "manager": "a@acme.com"}


def test_json_with_groups_resolves_members_and_nested_groups(tmp_path):
    document = {
        "users": [{"email": "a@acme.com"}, {"user_name": "bob", "employee_id": "9"}],
        "groups": [
            {"name": "Eng", "id": "g-1", "members": ["A@acme.com", "9"]},
            {"name": "All", "members": ["Eng"]},
            {"name": "Ghosts", "members": ["nobody@acme.com"]},
        ],
    }
    snapshot = read(write(tmp_path, json.dumps(document), name="d.json"))
    groups = {g.key: g for g in snapshot.groups}
    assert groups["Eng"].member_keys == {"a@acme.com", "9"} and groups["Eng"].external_id == "g-1"
    assert groups["All"].member_keys == {"Eng"}
    assert snapshot.problems == ["groups[2]: member 'nobody@acme.com' is neither a user nor a group in the file"]
    assert not snapshot.complete


def test_json_broken_user_names_its_line_and_index(tmp_path):
    text = json.dumps([{"email": "a@acme.com"}, {"name": "x"}, 3], indent=2)
    snapshot = read(write(tmp_path, text, name="d.json"))
    assert [p.split(":")[0] for p in snapshot.problems] == ["line 5 (users[1])", "line 8 (users[2])"]
    assert len(snapshot.users) == 1


def test_json_object_form_names_lines_of_its_users_list(tmp_path):
    text = '{"groups": [{"name": "G", "members": []}],\n "users": [\n  {"email": "a@acme.com"},\n  {"email": ""}\n]}'
    snapshot = read(write(tmp_path, text, name="d.json"))
    assert snapshot.problems == ["line 4 (users[1]): no email and no user name; row skipped"]


def test_invalid_json_raises_naming_line_and_column(tmp_path):
    with pytest.raises(ConnectorError, match="not valid JSON at line 2 column"):
        read(write(tmp_path, '[{"email": "a@acme.com"},\n oops]', name="d.json"))


def test_settings_from_a_config_table_validate_format_and_columns(tmp_path):
    settings = parse_settings(Settings, {"path": "x.csv", "delimiter": ";"}, "sources[0]")
    assert settings.delimiter == ";" and settings.format is None
    with pytest.raises(ConfigError, match="format"):
        parse_settings(Settings, {"path": "export.xlsx"}, "sources[0]")
    with pytest.raises(ConfigError, match=r"columns\.mail"):
        parse_settings(Settings, {"path": "x.csv", "columns": {"mail": "E"}}, "sources[0]")
    assert parse_settings(Settings, {"path": "export.dat", "format": "json"}, "sources[0]").format == "json"


def test_config_resolves_a_relative_path_against_the_config_folder(write_config, tmp_path):
    from syncd import config

    path = write_config('[[sources]]\nname = "hr"\norg = "acme"\nkind = "file"\npath = "hr/export.csv"\n')
    (source,) = config.load(path).sources
    assert source.connector == Settings(path=str(tmp_path / "hr" / "export.csv"))


def test_ten_thousand_row_export_reads_completely(tmp_path):
    lines = ["Employee Number,Email,Display Name,Department,Manager,Active,Groups"]
    for i in range(10_000):
        manager = "" if i == 0 else str(i // 10)
        lines.append(f"{i},user{i}@acme.com,User {i},Dept {i % 50},{manager},true,Group {i % 200};All Staff")
    snapshot = read(write(tmp_path, "\n".join(lines) + "\n"))
    assert snapshot.complete and len(snapshot.users) == 10_000
    users = by_key(snapshot)
    assert users["4321"].manager_key == "432" and users["0"].manager_key is None
    groups = {g.key: g for g in snapshot.groups}
    assert len(groups) == 201 and len(groups["All Staff"].member_keys) == 10_000
    assert len(groups["Group 7"].member_keys) == 50


def test_a_status_column_that_is_not_about_activity_can_be_turned_off(tmp_path):
    path = write(tmp_path, "email,status\na@acme.com,Full time\n")
    assert not read(path).complete
    (user,) = read(path, columns={"active": ""}).users
    assert user.active and user.attributes == {"status": "Full time"}


def test_someone_on_leave_stays_active(tmp_path):
    (user,) = read(write(tmp_path, "email,employment status\na@acme.com,On Leave\n")).users
    assert user.active


NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters=',;"\n\r\t'), max_size=20
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    people=st.lists(
        st.tuples(st.from_regex(r"[a-z][a-z0-9.]{0,10}", fullmatch=True), NAMES, NAMES, st.booleans()),
        max_size=15,
        unique_by=lambda p: p[0],
    ),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_whatever_an_hr_system_writes_as_csv_reads_back_the_same(tmp_path, people, delimiter):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["Email", "Display Name", "Job Title", "Active"])
    for local, name, title, active in people:
        writer.writerow([f"{local}@acme.com", name, title, "yes" if active else "no"])
    path = tmp_path / "roundtrip.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    snapshot = read(path)
    assert snapshot.complete, snapshot.problems
    read_back = [(u.email, u.display_name, u.title, u.active) for u in snapshot.users]
    assert read_back == [
        (f"{local}@acme.com", name.strip() or None, title.strip() or None, active)
        for local, name, title, active in people
    ]


@pytest.mark.parametrize("hidden", ["\x00", "\u200b", "\x1b", "\u202e"])
def test_a_control_or_format_character_in_an_identifier_makes_the_row_invalid(tmp_path, hidden):
    path = write(tmp_path, f"email,employee id\na@acme.com,1\nbo{hidden}b@acme.com,2\nc@acme.com,3{hidden}\n")
    snapshot = read(path)
    assert not snapshot.complete
    assert [u.email for u in snapshot.users] == ["a@acme.com"]
    assert snapshot.problems[0].startswith("line 3: email holds the control character U+")
    assert snapshot.problems[1].startswith("line 4: employee_number holds the control character U+")


def test_the_cursor_carries_the_record_count_of_the_read(tmp_path):
    path = write(tmp_path, "email\na@acme.com\nb@acme.com\n")
    assert read(path).cursor.endswith(";records=2")


def test_a_streamed_read_is_incomplete_until_its_last_record_then_judged(tmp_path):
    """``stream`` yields records one at a time; its verdict and cursor exist only once the records are exhausted."""
    path = write(tmp_path, "email,groups\na@acme.com,X\nb@acme.com,X;Y\nc@acme.com,Y\n")
    snapshot = Connector("hr", Settings(path=str(path))).stream(None)
    assert not isinstance(snapshot.users, list) and snapshot.groups == []
    records = iter(snapshot.users)
    assert next(records).key == "a@acme.com"
    assert not snapshot.complete and snapshot.cursor is None
    assert [user.groups for user in records] == [("X", "Y"), ("Y",)]
    assert snapshot.complete and snapshot.problems == [] and snapshot.cursor.endswith(";records=3")
    assert snapshot.cursor == read(path).cursor

    cut = Connector("hr", Settings(path=str(write(tmp_path, "email\na@acme.com\nb@acme.com")))).stream(None)
    assert [user.key for user in cut.users] == ["a@acme.com", "b@acme.com"]
    assert not cut.complete and "line 3: the last record has no line end" in cut.problems[0]
