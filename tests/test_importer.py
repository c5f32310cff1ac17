"""Importing members from messy spreadsheets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from newsletter.db import Database
from newsletter.errors import ImportFileError
from newsletter.members.imports import ImportResult, import_file
from newsletter.members.privacy import erase
from newsletter.members.subscribers import find_subscriber, set_status, unsubscribe
from newsletter.models import AuditEntry, Subscriber, SubscriberStatus

MESSY_DIR = Path(__file__).resolve().parent / "data"

MESSY = MESSY_DIR / "imports" / "messy.csv"
EXPECTED_REJECTS = [
    (3, "invalid email address: The part after the @-sign contains invalid characters: '@'."),
    (4, "invalid email address: The part after the @-sign is not valid. It should have a period."),
    (5, "missing email address"),
]


def members(db: Database) -> dict[str, Subscriber]:
    with db.session() as session:
        return {s.email: s for s in session.scalars(select(Subscriber).where(Subscriber.email.is_not(None)))}


def test_messy_export_imports_with_exact_counts_and_reasons(db: Database, tmp_path: Path) -> None:
    report = tmp_path / "rejects.csv"
    result = import_file(db, MESSY, report_path=report)
    assert result.counts() == {"imported": 5, "updated": 0, "unchanged": 0, "duplicates": 1, "rejected": 3}
    assert [(r.row, r.reason) for r in result.rejects] == EXPECTED_REJECTS
    assert result.warnings == []
    stored = members(db)
    assert set(stored) == {"alice.jones@example.org", "dai.evans@example.org", "eve@example.org",
                           "siobhan.ni@example.org", "zoe.lee@example.org"}
    assert stored["dai.evans@example.org"].first_name == "Dai; the Data"  # quoted ';'
    assert stored["dai.evans@example.org"].region == "wales"  # alias "Cymru"
    assert stored["siobhan.ni@example.org"].region == "northern-ireland"  # alias "NI"
    assert stored["zoe.lee@example.org"].first_name == "Zoë"
    assert stored["zoe.lee@example.org"].last_name == "Léger"
    eve = stored["eve@example.org"]
    assert eve.first_name == '=HYPERLINK("http://evil.example","click")'  # stored as plain text
    assert eve.organisation == "<script>alert(1)</script>"
    assert stored["alice.jones@example.org"].attributes == {"committee": "digital"}
    assert all(s.status == SubscriberStatus.ACTIVE for s in stored.values())
    # the rejects report keeps the rows (row number, reason, original cells)
    with report.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["row", "reason", "E-mail Address"]
    assert [(int(r[0]), r[1]) for r in rows[1:]] == EXPECTED_REJECTS
    assert rows[1][2] == "bob@@x"


def test_second_run_changes_nothing(db: Database) -> None:
    import_file(db, MESSY)
    before = {e: (s.first_name, s.last_name, s.region, s.updated_at) for e, s in members(db).items()}
    again = import_file(db, MESSY)
    assert again.counts() == {"imported": 0, "updated": 0, "unchanged": 5, "duplicates": 1, "rejected": 3}
    after = {e: (s.first_name, s.last_name, s.region, s.updated_at) for e, s in members(db).items()}
    assert after == before


def test_small_chunks_give_the_same_result(db: Database) -> None:
    result = import_file(db, MESSY, chunk_rows=2)
    assert result.counts() == {"imported": 5, "updated": 0, "unchanged": 0, "duplicates": 1, "rejected": 3}
    assert import_file(db, MESSY, chunk_rows=3).counts()["unchanged"] == 5


def test_dry_run_writes_nothing(db: Database) -> None:
    result = import_file(db, MESSY, dry_run=True)
    assert result.counts()["imported"] == 5
    assert members(db) == {}


def test_import_never_reactivates_suppressed_members(db: Database, tmp_path: Path) -> None:
    import_file(db, MESSY)
    with db.write_session() as session:
        unsubscribe(session, "alice.jones@example.org")
        set_status(session, find_subscriber(session, "zoe.lee@example.org"), SubscriberStatus.BOUNCED,
                   actor="webhook", reason="hard bounce")
        set_status(session, find_subscriber(session, "eve@example.org"), SubscriberStatus.COMPLAINED,
                   actor="webhook", reason="spam report")
        erase(session, "dai.evans@example.org")
    changed = tmp_path / "again.csv"
    changed.write_text(
        "Email,First Name,Region\n"
        "Alice.Jones@example.org,Alicia,london\n"
        "zoe.lee@example.org,Zoe,north east\n"
        "eve@example.org,Eve,SE\n"
        "dai.evans@example.org,Dai,wales\n", "utf-8")
    result = import_file(db, changed)
    assert result.counts() == {"imported": 0, "updated": 3, "unchanged": 0, "duplicates": 0, "rejected": 1}
    assert result.rejects[0].row == 5
    assert "erased" in result.rejects[0].reason
    stored = members(db)
    assert stored["alice.jones@example.org"].first_name == "Alicia"  # details updated …
    assert stored["alice.jones@example.org"].status == SubscriberStatus.UNSUBSCRIBED  # … status kept
    assert stored["zoe.lee@example.org"].status == SubscriberStatus.BOUNCED
    assert stored["eve@example.org"].status == SubscriberStatus.COMPLAINED
    assert "dai.evans@example.org" not in stored
    # the original messy file again: still nobody reactivated, the erased address rejected
    again = import_file(db, MESSY)
    assert again.counts()["imported"] == 0
    assert any(r.row == 6 and "erased" in r.reason for r in again.rejects)
    with db.session() as session:
        statuses = dict(session.execute(select(Subscriber.email_key, Subscriber.status)).all())
    assert statuses["alice.jones@example.org"] == SubscriberStatus.UNSUBSCRIBED
    assert statuses["zoe.lee@example.org"] == SubscriberStatus.BOUNCED


def test_cp1252_file_is_read_with_a_warning(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes("Email\tForename\tSurname\r\nzoe@example.org\tZoë\tLéger\r\n".encode("cp1252"))
    result = import_file(db, path)
    assert result.imported == 1
    assert "Windows-1252" in result.warnings[0]
    assert members(db)["zoe@example.org"].first_name == "Zoë"


def test_comma_file_with_quoted_commas_and_map(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text('Correo,Name,Branch,Interest\n'
                    'ann@example.org,"Ann Lee, MBE",Scotland,cyber\n', "utf-8")
    with pytest.raises(ImportFileError, match="no email column"):
        import_file(db, path)
    result = import_file(db, path, mapping={"Correo": "email", "Interest": "attributes.topic"})
    assert result.imported == 1
    ann = members(db)["ann@example.org"]
    assert (ann.first_name, ann.last_name, ann.region) == ("Ann", "Lee, MBE", "scotland")
    assert ann.attributes == {"topic": "cyber"}


def test_bad_region_and_date_are_rejected_with_row_numbers(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("Email,Region,Joined\na@example.org,Atlantis,\n\nb@example.org,London,31/02/2024\n"
                    "c@example.org,London,31/01/2024\n", "utf-8")
    result = import_file(db, path)
    assert [(r.row, r.reason.split(" '")[0]) for r in result.rejects] == [
        (2, "unknown region"), (4, "bad date")]
    assert result.imported == 1
    assert members(db)["c@example.org"].joined_at.isoformat() == "2024-01-31T00:00:00+00:00"


def test_xlsx_import(db: Database, tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["E-mail", "First Name", "Region", "Member Type"])
    sheet.append(["Sam@Example.org", "Sam", "W Midlands", "Corporate"])
    path = tmp_path / "members.xlsx"
    book.save(path)
    assert import_file(db, path).imported == 1
    sam = members(db)["Sam@example.org"]
    assert (sam.email_key, sam.region, sam.member_type) == ("sam@example.org", "west-midlands", "corporate")


def test_cli_import_json(cli, project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    first = cli("subscribers", "import", str(MESSY), "--json", "--report", str(project / "rej.csv"))
    assert first.exit_code == 0, first.stderr
    assert {k: json.loads(first.stdout)[k] for k in ("imported", "updated", "duplicates", "rejected")} == {
        "imported": 5, "updated": 0, "duplicates": 1, "rejected": 3}
    second = json.loads(cli("subscribers", "import", str(MESSY), "--json").stdout)
    assert (second["imported"], second["updated"]) == (0, 0)
    human = cli("subscribers", "import", str(MESSY))
    assert "row 3: invalid email address" in human.stdout


def test_sample_members_cover_every_region_once_each(db: Database) -> None:
    from newsletter.members.imports import import_sample
    from newsletter.regions import REGION_SLUGS

    result, rows = import_sample(db, MESSY_DIR.parent.parent)
    assert result.counts() == {"imported": 40, "updated": 0, "unchanged": 0, "duplicates": 0, "rejected": 0}
    counts = {r["name"]: r["count"] for r in rows}
    assert all(counts[slug] >= 1 for slug in REGION_SLUGS)
    assert sum(counts[slug] for slug in REGION_SLUGS) == 40  # exactly one regional variant each
    assert counts["associates"] >= 1
    assert import_sample(db, MESSY_DIR.parent.parent)[0].imported == 0


def test_each_chunk_looks_up_existing_members_with_one_query(db: Database, tmp_path: Path) -> None:
    from sqlalchemy import event

    path = tmp_path / "many.csv"
    path.write_text("Email\n" + "".join(f"m{i}@example.org\n" for i in range(10)), "utf-8")
    lookups: list[str] = []

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        flat = " ".join(statement.split()).lower()
        if flat.startswith("select") and "from subscribers" in flat and "email_key" in flat:
            lookups.append(flat)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = import_file(db, path, chunk_rows=4)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert result.imported == 10
    assert len(lookups) == 3  # 10 rows in chunks of 4: one lookup per chunk, not one per row


def test_control_characters_are_removed_from_cells_with_a_warning_per_row(db: Database, tmp_path: Path) -> None:
    # NUL cannot be stored in PostgreSQL text; escape sequences would drive the admin's terminal.
    # Both backends store the same cleaned text, and each cleaned row is named in a warning.
    path = tmp_path / "controls.csv"
    path.write_text("Email,First name,Last name,Organisation,Committee\r\n"
                    "nul@example.org,A\x00nn,Lee,Camden\x7f,digital\x85\r\n"
                    "esc@example.org,\x1b[31mRED\x1b[0m,\"Tab\tand\nline\",Leeds,\r\n"
                    "plain@example.org,Pat,Ng,Hull,\r\n"
                    "\x00bell\x07@example.org,Bo,,,\r\n", encoding="utf-8", newline="")
    result = import_file(db, path)
    assert result.counts()["imported"] == 4 and result.rejected == 0
    assert result.warnings == [
        "row 2: removed control characters from first_name, organisation, attributes.committee",
        "row 3: removed control characters from first_name",
        "row 6: removed control characters from email",  # row 3 spans two lines
    ]
    stored = members(db)
    assert stored["nul@example.org"].first_name == "Ann"
    assert stored["nul@example.org"].organisation == "Camden"
    assert stored["nul@example.org"].attributes == {"committee": "digital"}
    assert stored["esc@example.org"].first_name == "[31mRED[0m"
    assert stored["esc@example.org"].last_name == "Tab and line"  # tabs / line breaks in a name: spaces
    assert "bell@example.org" in stored


def test_no_email_column_error_shows_no_raw_control_bytes(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\x1b[2J\x00name,\x07org\r\nx,y\r\n")
    with pytest.raises(ImportFileError) as caught:
        import_file(db, path)
    assert "no email column" in caught.value.message
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in caught.value.message)


def test_long_cells_are_read_and_a_broken_row_is_named(db: Database, tmp_path: Path) -> None:
    long_notes = tmp_path / "long.csv"  # over the csv module's default limit of 131,072
    long_notes.write_text("Email,Notes\r\nlong@example.org," + "n" * 200_000 + "\r\n", encoding="utf-8")
    import_file(db, long_notes)
    assert members(db)["long@example.org"].attributes == {"notes": "n" * 200_000}

    broken = tmp_path / "broken.csv"  # an unclosed quote swallows the rest of the file
    broken.write_text("Email,Notes\r\nkept@example.org,ok\r\nbig@example.org,\"" + "x" * 11_000_000
                      + "\r\nlost@example.org,after\r\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"row 3: field larger than field limit") as caught:
        import_file(db, broken)
    assert "unclosed quote" in (caught.value.hint or "")
    assert "kept@example.org" in members(db)  # the rows before the broken one are kept


def test_xlsx_formula_cells_without_a_cached_value_are_read_as_text(db: Database, tmp_path: Path) -> None:
    import zipfile

    from openpyxl import Workbook

    book = Workbook()  # openpyxl saves formulas without cached values, as many exporters do
    sheet = book.active
    sheet.append(["Email", "First name", "Last name"])
    sheet.append(["eve@example.org", '=HYPERLINK("http://evil.example","click")', "=1+1"])
    plain = tmp_path / "formulas.xlsx"
    book.save(plain)
    cached = tmp_path / "cached.xlsx"  # the same, as saved by Excel: 1+1 was calculated
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(cached, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<f>1+1</f><v></v>", b"<f>1+1</f><v>2</v>")
                assert b"<v>2</v>" in data
            dst.writestr(item, data)
    assert import_file(db, plain).imported == 1
    eve = members(db)["eve@example.org"]
    assert eve.first_name == '=HYPERLINK("http://evil.example","click")'  # stored as plain text
    assert eve.last_name == "=1+1"
    assert import_file(db, cached).updated == 1
    assert members(db)["eve@example.org"].last_name == "2"


CRM = "Email,First name,Region,Joined\nann@example.org,Ann,London,08/02/2024\nbob@example.org,Bob,Wales,2023-01-31\n"


def test_a_reimport_keeps_what_an_admin_set_and_reports_it(cli, project: Path, tmp_path: Path) -> None:
    crm = tmp_path / "crm.csv"
    crm.write_text(CRM, "utf-8")
    assert cli("subscribers", "import", str(crm)).exit_code == 0
    assert cli("subscribers", "update", "ann@example.org", "--region", "Scotland").exit_code == 0
    report = tmp_path / "report.csv"
    again = cli("subscribers", "import", str(crm), "--json", "--report", str(report))
    data = json.loads(again.stdout)
    assert (data["updated"], data["unchanged"], data["kept_manual"]) == (0, 2, 1)
    assert any("kept what a person set for 1 member" in w for w in data["warnings"])
    assert data["changes"] == [{"row": 2, "email": "ann@example.org", "kept": True,
                                "fields": [{"field": "region", "old": "scotland", "new": "london"}]}]
    with report.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1][:2] == ["2", "kept what a person set: region = scotland (the file says london); "
                                "--overwrite-manual replaces it"]
    shown = json.loads(cli("subscribers", "show", "ann@example.org", "--json").stdout)
    assert shown["region"] == "scotland"
    forced = json.loads(cli("subscribers", "import", str(crm), "--json", "--overwrite-manual").stdout)
    assert forced["updated"] == 1
    assert json.loads(cli("subscribers", "show", "ann@example.org", "--json").stdout)["region"] == "london"


def test_an_import_that_changes_a_member_is_audited_with_old_and_new(db: Database, tmp_path: Path) -> None:
    crm = tmp_path / "crm.csv"
    crm.write_text(CRM, "utf-8")
    import_file(db, crm, source="crm-nov")
    crm.write_text(CRM.replace("Bob,Wales", "Robert,North West"), "utf-8")
    report = tmp_path / "changes.csv"
    result = import_file(db, crm, source="crm-dec", report_path=report)
    assert result.updated == 1
    (change,) = result.changes
    assert [(f.field, f.old, f.new) for f in change.changes] == [
        ("first_name", "Bob", "Robert"), ("region", "wales", "north-west")]
    with db.session() as session:
        bob = session.scalar(select(Subscriber).where(Subscriber.email == "bob@example.org"))
        trail = [(a.actor, a.action, a.reason) for a in session.scalars(
            select(AuditEntry).where(AuditEntry.subscriber_id == bob.id).order_by(AuditEntry.id))]
    assert trail[-1] == ("import:crm-dec", "update", "changed: first_name, region (wales → north-west)")
    assert bob.field_sources == {"first_name": "import:crm-dec", "region": "import:crm-dec"}
    with report.open(encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f))[1][:2] == ["3", "updated first_name: Bob → Robert; region: wales → north-west"]


def test_ambiguous_day_month_dates_are_reported_and_can_be_read_month_first(db: Database, tmp_path: Path) -> None:
    crm = tmp_path / "crm.csv"
    crm.write_text(CRM, "utf-8")
    result = import_file(db, crm)
    assert result.ambiguous_dates == 1
    assert any("row 2: 08/02/2024 was read day first (UK) as 08 February 2024" in w and "--dates mdy" in w
               for w in result.warnings)
    assert members(db)["ann@example.org"].joined_at.date().isoformat() == "2024-02-08"
    again = import_file(db, crm, date_order="mdy")
    assert again.updated == 1
    assert members(db)["ann@example.org"].joined_at.date().isoformat() == "2024-08-02"
    crm.write_text("Email,Joined\ncat@example.org,31/01/2024\n", "utf-8")
    assert import_file(db, crm).ambiguous_dates == 0  # 31 can only be a day


def test_international_addresses_on_import(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "intl.csv"
    path.write_text("Email,First name\nann@Bücher.example,Ann\njosé@example.org,José\n", "utf-8")
    result = import_file(db, path)
    assert result.imported == 1 and result.rejected == 1
    assert result.rejects[0].row == 3 and "non-ASCII characters before the @" in result.rejects[0].reason
    assert set(members(db)) == {"ann@xn--bcher-kva.example"}


def test_progress_is_reported_once_each_chunk_is_stored(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("Email\n" + "".join(f"m{i}@example.org\n" for i in range(25)), "utf-8")
    seen: list[tuple[int, int, int]] = []

    def progress(done: int, total: int) -> None:
        with db.session() as session:
            stored = session.scalar(select(func.count()).select_from(Subscriber))
        seen.append((done, total, stored or 0))

    assert import_file(db, path, chunk_rows=10, progress=progress).imported == 25
    size = path.stat().st_size
    assert [stored for _, _, stored in seen] == [10, 20, 25]  # each call after its chunk was written
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    assert seen[-1][:2] == (size, size)


def test_a_failed_chunk_stops_the_import_and_keeps_the_chunks_before(db: Database, tmp_path: Path) -> None:
    # a database error while writing the third chunk (here a trigger refusing one address)
    with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON subscribers "
                                 "WHEN NEW.email_key = 'm25@example.org' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        else:
            conn.exec_driver_sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                 "IF NEW.email_key = 'm25@example.org' THEN RAISE EXCEPTION 'refused'; END IF; "
                                 "RETURN NEW; END $$")
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON subscribers "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()")
    path = tmp_path / "many.csv"
    path.write_text("Email\n" + "".join(f"m{i}@example.org\n" for i in range(60)), "utf-8")
    with pytest.raises(DBAPIError, match="refused"):
        import_file(db, path, chunk_rows=10)
    assert len(members(db)) == 20  # the first two chunks; nothing after the failed one


def test_an_address_another_import_stores_meanwhile_is_updated_not_doubled(db: Database, tmp_path: Path) -> None:
    # PostgreSQL (read committed): another writer stores m3 after this import looked the chunk up.
    # The import's insert waits for the other transaction; once that commits, m3 is taken, so the
    # chunk is rolled back and done again, finding m3 stored. (SQLite's write lock rules this out.)
    if db.dialect != "postgresql":
        pytest.skip("SQLite imports hold the write lock from lookup to commit")
    import threading
    import time

    path = tmp_path / "many.csv"
    path.write_text("Email,First name\n" + "".join(f"m{i}@example.org,New{i}\n" for i in range(6)), "utf-8")
    other = db.engine.connect()
    other.begin()
    other.exec_driver_sql("INSERT INTO subscribers (email, email_key, first_name, attributes, field_sources, status, "
                          "joined_at, created_at, updated_at) VALUES ('m3@example.org', 'm3@example.org', 'Old', "
                          "'{}', '{}', 'unsubscribed', now(), now(), now())")
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(import_file(db, path)))
    worker.start()
    with db.engine.connect() as watch:
        for _ in range(200):  # until the import waits for our row lock
            if watch.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar():
                break
            time.sleep(0.05)
    other.commit()
    other.close()
    worker.join(30)
    result = outcome[0]
    assert isinstance(result, ImportResult)
    assert result.counts() == {"imported": 5, "updated": 1, "unchanged": 0, "duplicates": 0, "rejected": 0}
    stored = members(db)
    assert len(stored) == 6
    assert stored["m3@example.org"].first_name == "New3"
    assert stored["m3@example.org"].status == SubscriberStatus.UNSUBSCRIBED  # never reactivated
    with db.session() as session:
        creates = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "create"))
    assert creates == 5
