"""Subscriber store: addresses, admin actions with audit rows, export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.db import Database
from newsletter.errors import InputError, NotFound
from newsletter.members.subscribers import (
    InvalidEmail,
    SubscriberDetails,
    add_subscriber,
    escape_cell,
    find_subscriber,
    iter_export,
    normalise_email,
    resubscribe,
    search_subscribers,
    unsubscribe,
    update_subscriber,
    write_csv,
)
from newsletter.models import AuditEntry, SubscriberStatus

MESSY = Path(__file__).resolve().parent / "data" / "imports" / "messy.csv"


def test_addresses_are_trimmed_and_domain_lower_cased() -> None:
    address = normalise_email("  Mary.Smith@Example.ORG ")
    assert (address.email, address.key) == ("Mary.Smith@example.org", "mary.smith@example.org")
    for bad, reason in [("", "missing"), ("bob@@x", "invalid"), ("bob@localhost", "invalid"),
                        ("a b@example.org", "invalid")]:
        with pytest.raises(InvalidEmail, match=reason):
            normalise_email(bad)


def test_international_domains_are_idna_encoded_and_non_ascii_mailboxes_refused() -> None:
    assert normalise_email("ann@Bücher.example").email == "ann@xn--bcher-kva.example"
    assert normalise_email("ann@xn--bcher-kva.example").key == "ann@xn--bcher-kva.example"
    with pytest.raises(InvalidEmail, match="non-ASCII characters before the @"):
        normalise_email("josé@example.org")


def test_names_lose_bidi_and_zero_width_characters(db: Database) -> None:
    with db.write_session() as session:
        add_subscriber(session, "bidi@example.org", SubscriberDetails(
            first_name="An\u200bn\u202e", last_name="\u2066Smith\u2069\ufeff", organisation="Co\u200f-op\u2060"))
    with db.session() as session:
        sub = find_subscriber(session, "bidi@example.org")
        assert (sub.first_name, sub.last_name, sub.organisation) == ("Ann", "Smith", "Co-op")
    assert SubscriberDetails(first_name="\u0646\u0627\u200c\u0645").checked().first_name == "\u0646\u0627\u200c\u0645"


def test_escape_cell() -> None:
    assert [escape_cell(v) for v in ("=1+1", "+44", "-x", "@SUM(A1)", "\tx", "\rx", "Ann", None)] == [
        "'=1+1", "'+44", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "Ann", ""]


def test_add_update_unsubscribe_resubscribe_with_audit(db: Database) -> None:
    with db.write_session() as session:
        sub = add_subscriber(session, "Ann@Example.org", SubscriberDetails(first_name="Ann", region="SE",
                                                                            member_type=" Student "))
        assert (sub.region, sub.member_type, sub.status) == ("south-east", "student", "active")
        with pytest.raises(InputError, match="already a subscriber"):
            add_subscriber(session, " ann@example.ORG", SubscriberDetails())
        with pytest.raises(InputError, match="unknown region"):
            update_subscriber(session, "ann@example.org", SubscriberDetails(region="Mordor"))
        assert update_subscriber(session, "ann@example.org",
                                 SubscriberDetails(last_name="Lee", attributes={"x": "1"})) == {
            "last_name": "Lee", "attributes": {"x": "1"}}
        assert unsubscribe(session, "ANN@example.org", reason="member asked by phone") is True
        assert unsubscribe(session, "ann@example.org") is False
        assert resubscribe(session, "ann@example.org", reason="rejoined at conference") is True
        with pytest.raises(NotFound):
            find_subscriber(session, "nobody@example.org")
    with db.session() as session:
        trail = [(a.actor, a.action, a.old_status, a.new_status, a.reason)
                 for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert trail == [
        ("cli", "create", None, "active", "added"),
        ("cli", "update", None, None, "changed: attributes.x, last_name"),
        ("cli", "status", "active", "unsubscribed", "member asked by phone"),
        ("cli", "status", "unsubscribed", "active", "rejoined at conference"),
    ]


def test_export_escapes_formula_cells(db: Database) -> None:
    from newsletter.members.imports import import_file

    import_file(db, MESSY)
    out = io.StringIO()
    with db.session() as session:
        assert write_csv(iter_export(session), out) == 5
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    eve = rows["eve@example.org"]
    assert eve["first_name"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"
    assert eve["organisation"] == "<script>alert(1)</script>"
    assert rows["alice.jones@example.org"]["attributes"] == '{"committee": "digital"}'
    assert rows["zoe.lee@example.org"]["first_name"] == "Zoë"


def test_cli_admin_commands(cli, project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    added = cli("subscribers", "add", "x@example.org", "--first-name", "[bold]X[/bold]", "--region", "NW",
                "--attr", "committee=digital", "--json")
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["region"] == "north-west"
    shown = cli("subscribers", "show", "X@example.org")
    assert "[bold]X[/bold]" in shown.stdout  # user data printed literally, not as Rich markup
    assert cli("subscribers", "unsubscribe", "x@example.org").exit_code == 0
    assert json.loads(cli("subscribers", "show", "x@example.org", "--json").stdout)["status"] == (
        SubscriberStatus.UNSUBSCRIBED)
    assert cli("subscribers", "show", "nobody@example.org").exit_code == 2
    assert cli("subscribers", "import", str(MESSY)).exit_code == 0
    out = project / "london.csv"
    assert cli("subscribers", "export", "--segment", "london", "--out", str(out)).exit_code == 0
    assert [r["email"] for r in csv.DictReader(out.open(encoding="utf-8"))] == ["alice.jones@example.org"]
    exported = json.loads(cli("subscribers", "export", "--format", "json").stdout)
    assert {r["email"] for r in exported} >= {"x@example.org", "eve@example.org"}


def test_admin_values_lose_control_characters(db: Database) -> None:
    with db.write_session() as session:
        add_subscriber(session, "ctl@example.org",
                       SubscriberDetails(first_name="\x1b[31mRED\x1b[0m", last_name="Le\x00e",
                                         organisation="Line\none", attributes={"k\x9b": "v\x00"}),
                       consent_source="form\x00", consent_version="v\x072")
    with db.write_session() as session:
        update_subscriber(session, "ctl@example.org", SubscriberDetails(member_type="Full\x00\tMember"))
    with db.session() as session:
        sub = find_subscriber(session, "ctl@example.org")
        assert (sub.first_name, sub.last_name, sub.organisation) == ("[31mRED[0m", "Lee", "Line one")
        assert sub.attributes == {"k": "v"}
        assert (sub.consent_source, sub.consent_version, sub.member_type) == ("form", "v2", "full member")
    with pytest.raises(InputError, match="control characters"):
        normalise_email("a\x00b@example.org")


def test_cli_warns_about_and_never_prints_control_characters(  # type: ignore[no-untyped-def]
        cli, project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    added = cli("subscribers", "add", "esc@example.org", "--first-name", "\x1b[31mRED\x1b[0m")
    assert added.exit_code == 0, added.stderr
    assert "removed control characters from first_name" in added.stderr
    updated = cli("subscribers", "update", "esc@example.org", "--last-name", "B\x07ell")
    assert "removed control characters from last_name" in updated.stderr
    shown = cli("subscribers", "show", "esc@example.org")
    assert "RED" in shown.stdout and "Bell" in shown.stdout
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout


def test_cli_unwritable_output_paths_are_input_errors(  # type: ignore[no-untyped-def]
        cli, project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    missing = project / "no-such-dir" / "x.csv"
    exported = cli("subscribers", "export", "--out", str(missing))
    assert exported.exit_code == 2, exported.stderr
    assert f"cannot write {missing}: directory {missing.parent} does not exist" in exported.stderr
    imported = cli("subscribers", "import", str(MESSY), "--report", str(missing))
    assert imported.exit_code == 2, imported.stderr
    assert f"cannot write {missing}" in imported.stderr
    cli("subscribers", "add", "a@example.org")
    access = cli("subscribers", "access", "a@example.org", "--out", str(missing))
    assert access.exit_code == 2 and f"cannot write {missing}" in access.stderr
    assert not missing.parent.exists()


def test_change_email_keeps_the_member_and_refuses_a_taken_or_erased_address(cli, project) -> None:
    cli("subscribers", "import", "subscribers/sample.csv")
    first = json.loads(cli("subscribers", "list", "--json", "--limit", "2").stdout)["members"]
    ann, other = first[0], first[1]
    result = cli("subscribers", "change-email", ann["email"], "Ann.New@Example.ORG")
    assert result.exit_code == 0, result.stderr
    moved = json.loads(cli("subscribers", "show", "ann.new@example.org", "--json").stdout)
    assert (moved["id"], moved["region"], moved["consent"]) == (ann["id"], ann["region"], ann["consent"])
    assert moved["email"] == "Ann.New@example.org"
    assert cli("subscribers", "show", ann["email"]).exit_code == 2
    taken = cli("subscribers", "change-email", "ann.new@example.org", other["email"])
    assert taken.exit_code == 2 and "already another member's address" in taken.stderr
    cli("subscribers", "add", "gone@example.org")
    cli("subscribers", "erase", "gone@example.org", "--yes")
    erased = cli("subscribers", "change-email", "ann.new@example.org", "gone@example.org")
    assert erased.exit_code == 2 and "was erased" in erased.stderr
    access = json.loads(cli("subscribers", "access", "ann.new@example.org").stdout)
    assert access["audit"][-1]["action"] == "email" and "@" not in access["audit"][-1]["reason"]


def test_list_finds_members_by_name_organisation_region_and_status(cli, project) -> None:
    cli("subscribers", "import", "subscribers/sample.csv")
    everyone = json.loads(cli("subscribers", "list", "--json", "--limit", "1000").stdout)
    assert everyone["total"] == 40 == len(everyone["members"])
    someone = everyone["members"][7]
    by_name = json.loads(cli("subscribers", "list", "--json", "--search",
                             f"{someone['first_name']} {someone['last_name']}".upper()).stdout)
    assert someone["email"] in [m["email"] for m in by_name["members"]]
    org = someone["organisation"]
    by_org = json.loads(cli("subscribers", "list", "--json", "--search", org[2:9].lower()).stdout)
    assert by_org["members"] and all(org[2:9].lower() in (m["organisation"] or "").lower()
                                     or org[2:9].lower() in m["email"].lower()
                                     or org[2:9].lower() in f"{m['first_name']} {m['last_name']}".lower()
                                     for m in by_org["members"])
    wales = json.loads(cli("subscribers", "list", "--json", "--region", "Cymru").stdout)
    assert wales["total"] and all(m["region"] == "wales" for m in wales["members"])
    cli("subscribers", "unsubscribe", someone["email"])
    gone = json.loads(cli("subscribers", "list", "--json", "--status", "unsubscribed").stdout)
    assert [m["email"] for m in gone["members"]] == [someone["email"]]
    assert json.loads(cli("subscribers", "list", "--json", "--search", "100%_").stdout)["total"] == 0
    page2 = json.loads(cli("subscribers", "list", "--json", "--limit", "10", "--offset", "10").stdout)
    assert [m["email"] for m in page2["members"]] == [m["email"] for m in everyone["members"][10:20]]
    bad = cli("subscribers", "list", "--status", "sleeping")
    assert bad.exit_code == 2 and "unknown status" in bad.stderr


def test_search_is_case_insensitive_on_both_backends(db) -> None:
    with db.write_session() as session:
        add_subscriber(session, "Jo.Bloggs@example.org", SubscriberDetails("Jo", "Bloggs", "Fife Council", "scot"))
        add_subscriber(session, "x_y@example.org", SubscriberDetails("Ann", "Other", "Powys 100% Council", "wales"))
    with db.session() as session:
        assert [r["email"] for r in search_subscribers(session, text="jo bloggs").records] == ["Jo.Bloggs@example.org"]
        assert [r["email"] for r in search_subscribers(session, text="FIFE").records] == ["Jo.Bloggs@example.org"]
        assert [r["email"] for r in search_subscribers(session, text="100%").records] == ["x_y@example.org"]
        assert search_subscribers(session, text="x%y").total == 0
        assert search_subscribers(session, region="Scotland").total == 1
