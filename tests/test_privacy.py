"""GDPR erasure and access."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text

from newsletter.db import Database
from newsletter.errors import InputError
from newsletter.members.imports import import_file
from newsletter.members.privacy import access, erase
from newsletter.members.subscribers import SubscriberDetails, add_subscriber, unsubscribe
from newsletter.models import AuditEntry, Base, Meta, Recipient, SendRun

EMAIL = "Grace.Hopper@Example.org"
PERSONAL = ("grace.hopper", "Grace", "Hopper", "Navy Council", "cobol")


def dump(db: Database) -> str:
    """Every value in every table, as text."""
    chunks: list[str] = []
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                chunks.append(" ".join(str(v) for v in row))
    return "\n".join(chunks).lower()


def seed(db: Database) -> int:
    with db.write_session() as session:
        sub = add_subscriber(session, EMAIL, SubscriberDetails(
            first_name="Grace", last_name="Hopper", organisation="Navy Council", region="london",
            member_type="member", attributes={"language": "cobol"}), consent_version="v2")
        unsubscribe(session, EMAIL, reason="too many emails")
        run = SendRun(edition="2026-12", segment="london", variant_sha256="0" * 64, subject="Digest")
        session.add(run)
        session.flush()
        session.add(Recipient(run_id=run.id, edition="2026-12", subscriber_id=sub.id,
                              email="grace.hopper@example.org", name="Grace Hopper",
                              first_name="Grace"))
        return sub.id


def test_access_returns_everything_held(db: Database) -> None:
    seed(db)
    with db.session() as session:
        data = access(session, "grace.hopper@example.org")
    json.dumps(data)  # JSON-ready
    sub = data["subscriber"]
    assert (sub["email"], sub["first_name"], sub["attributes"]) == (
        "Grace.Hopper@example.org", "Grace", {"language": "cobol"})
    assert sub["consent"]["version"] == "v2" and sub["consent"]["source"] == "cli"
    assert [a["action"] for a in data["audit"]] == ["create", "status"]
    assert data["deliveries"] == [{"edition": "2026-12", "email": "grace.hopper@example.org",
                                   "name": "Grace Hopper"}]


def test_erase_then_access_shows_no_personal_data(db: Database, tmp_path: Path) -> None:
    sub_id = seed(db)
    assert all(p.lower() in dump(db) for p in PERSONAL)
    with db.write_session() as session:
        assert erase(session, EMAIL) == sub_id
    everything = dump(db)
    for value in PERSONAL:
        assert value.lower() not in everything
    with db.session() as session:
        data = access(session, EMAIL)
        assert data["found"] is False and data["erased"] is True and "subscriber" not in data
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert (last.action, last.subscriber_id, last.new_status) == ("erase", sub_id, "erased")
        assert "grace" not in (last.reason or "").lower()
        recipient = session.scalars(select(Recipient)).one()
        assert (recipient.email, recipient.name, recipient.first_name) == ("", None, "")
    # suppression holds: cannot be re-added, and an import of the address is rejected
    with db.write_session() as session, pytest.raises(InputError, match="erased"):
        add_subscriber(session, "grace.hopper@example.org", SubscriberDetails())
    path = tmp_path / "again.csv"
    path.write_text("Email,First name\n GRACE.HOPPER@example.org ,Grace\n", "utf-8")
    result = import_file(db, path)
    assert result.imported == 0 and result.rejected == 1 and "erased" in result.rejects[0].reason
    assert "grace" not in dump(db)


def test_salt_is_made_once_per_database(db: Database) -> None:
    seed(db)
    with db.write_session() as session:
        erase(session, EMAIL)
        add_subscriber(session, "other@example.org", SubscriberDetails())
        erase(session, "other@example.org")
    with db.session() as session:
        salts = session.scalars(select(Meta.value).where(Meta.key == "tombstone_salt")).all()
    assert len(salts) == 1 and len(salts[0]) == 64
    with db.engine.connect() as conn:
        hashes = conn.execute(text("SELECT email_hash FROM erasure_tombstones")).scalars().all()
    import hashlib

    assert hashlib.sha256(b"grace.hopper@example.org").hexdigest() not in hashes
    assert len(hashes) == 2


def test_cli_erase_and_access(cli, project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    assert cli("subscribers", "import", "subscribers/sample.csv").exit_code == 0
    before = json.loads(cli("subscribers", "access", "rhys.pritchard@example.org").stdout)
    assert before["subscriber"]["last_name"] == "Pritchard"
    assert cli("subscribers", "erase", "rhys.pritchard@example.org", "--yes").exit_code == 0
    after = json.loads(cli("subscribers", "access", "rhys.pritchard@example.org").stdout)
    assert after["erased"] is True and "Pritchard" not in json.dumps(after)
    again = json.loads(cli("subscribers", "import", "subscribers/sample.csv", "--json").stdout)
    assert (again["imported"], again["updated"], again["rejected"]) == (0, 0, 1)


def test_erase_rewrites_reasons_and_notes_that_mention_the_address(db: Database, db_url: str) -> None:
    from newsletter.models import BatchAudit

    with db.write_session() as session:
        add_subscriber(session, EMAIL, SubscriberDetails(first_name="Grace", last_name="Hopper"))
        other = add_subscriber(session, "colleague@example.org", SubscriberDetails())
        unsubscribe(session, EMAIL, reason=f"member phoned from {EMAIL.upper()}")
        unsubscribe(session, "colleague@example.org", reason=f"asked by {EMAIL.lower()} on their behalf")
        session.add(BatchAudit(run_id=1, batch_id=1, seq=0, actor="cli:ann", action="resend", old_status="uncertain",
                               new_status="pending", reason=f"{EMAIL} says it never came"))
        session.flush()
        other_id = other.id
    with db.write_session() as session:
        erase(session, EMAIL, reason=f"erasure request by {EMAIL}")
    assert "grace.hopper@example.org" not in dump(db)
    with db.session() as session:
        reasons = list(session.scalars(select(AuditEntry.reason).where(AuditEntry.subscriber_id == other_id)))
        assert any(r == "asked by [erased] on their behalf" for r in reasons)
        assert session.scalar(select(BatchAudit.reason)) == "[erased] says it never came"
    if db.dialect == "sqlite":
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from newsletter.db import open_database

    database = open_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    database.dispose()
    for path in tmp_path.glob("fresh.db*"):
        assert path.stat().st_mode & 0o077 == 0, path
