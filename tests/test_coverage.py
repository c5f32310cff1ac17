"""Who an edition reaches: overlapping segments, regions left out, members with no region.
`send --dry-run` must say exactly what the send then does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from delivery_support import make_project
from sqlalchemy import insert, select

from newsletter.db import Database
from newsletter.models import Recipient, SendRun, Subscriber

SEGMENTS = """\
priority: [scotland, wales, london]
segments:
  scotland:
    rule: {region: scotland}
  wales:
    rule: {region: wales}
  london:
    rule: {region: london}
  heads-of-it:
    rule: {attributes: {role: head of it}}
"""


def _members(db: Database) -> None:
    rows = []
    for i in range(5):  # two of the five Scottish members are heads of IT
        rows.append({"email": f"scot{i}@example.org", "region": "scotland",
                     "attributes": {"role": "head of it"} if i < 2 else {}})
    for i in range(3):  # heads of IT elsewhere
        rows.append({"email": f"head{i}@example.org", "region": "london", "attributes": {"role": "head of it"}})
    for i in range(4):
        rows.append({"email": f"east{i}@example.org", "region": "east", "attributes": {}})
    rows.append({"email": "nowhere@example.org", "region": None, "attributes": {}})
    with db.session() as session:
        session.execute(insert(Subscriber), [{**r, "email_key": r["email"], "status": "active"} for r in rows])


@pytest.fixture
def edition(tmp_path: Path, db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_project(tmp_path, segments=("heads-of-it", "scotland"))
    (tmp_path / "subscribers" / "segments.yaml").write_text(SEGMENTS, "utf-8")
    _members(db)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    return tmp_path


def _sent(db: Database) -> dict[str, set[str]]:
    with db.session() as session:
        rows = session.execute(select(Recipient.email, Recipient.run_id)).all()
        runs = {r.id: r.segment for r in session.scalars(select(SendRun))}
    out: dict[str, set[str]] = {}
    for email, run_id in rows:
        out.setdefault(runs[run_id], set()).add(email)
    return out


def test_dry_run_equals_the_send_with_overlapping_segments(edition: Path, db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    dry = cli("send", "x.yaml", "--build", "build/2026-12", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    planned = {r["segment"]: r for r in json.loads(dry.stdout)}
    assert (planned["scotland"]["audience"], planned["heads-of-it"]["audience"]) == (5, 3)
    assert planned["heads-of-it"]["claimed_by_earlier"] == {"scotland": 2}
    text = cli("send", "x.yaml", "--build", "build/2026-12", "--dry-run").stdout
    assert "heads-of-it: 2 more members match it but get scotland, which comes first" in text
    # Send the segments one at a time, the later one first: the earlier segment still wins.
    assert cli("send", "x.yaml", "--build", "build/2026-12", "--segment", "heads-of-it", "--yes",
               "--outbox", "out").exit_code == 0
    assert cli("send", "x.yaml", "--build", "build/2026-12", "--segment", "scotland", "--yes",
               "--outbox", "out").exit_code == 0
    sent = _sent(db)
    assert {k: len(v) for k, v in sent.items()} == {"scotland": 5, "heads-of-it": 3}
    assert sent["scotland"] == {f"scot{i}@example.org" for i in range(5)}


def test_members_no_segment_reaches_are_named_by_region(edition: Path, cli) -> None:  # type: ignore[no-untyped-def]
    dry = cli("send", "x.yaml", "--build", "build/2026-12", "--dry-run")
    assert "not in any segment of this edition: 5 active members (east 4, no region 1)" in dry.stdout
    data = json.loads(cli("send", "x.yaml", "--build", "build/2026-12", "--dry-run", "--json").stdout)
    assert data[0]["not_in_any_segment"] == {"east": 4, "none": 1}


THREE_REGIONS = """\
edition: "2027-01"
title: January digest
subject: Your January digest
preheader: The month in local-government IT
intro: Hello members.
featured: data-bill-right-to-be-forgotten
articles:
  slugs: [gdpr-roadmap]
segments:
  scotland: {}
  wales: {}
  london: {}
"""


def test_check_names_the_members_an_edition_of_three_regions_leaves_out(  # type: ignore[no-untyped-def]
        project: Path, db: Database, db_url: str, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    assert cli("subscribers", "import", "subscribers/sample.csv").exit_code == 0
    (project / "issues" / "2027-01.yaml").write_text(THREE_REGIONS, "utf-8")
    result = cli("check", "issues/2027-01.yaml")
    assert result.exit_code == 0, result.stderr
    assert "scotland: 4 active members today" in result.stdout
    assert ("not in any segment of this edition: 28 active members (yorkshire 4, east 3, east-midlands 3, "
            "north-east 3, north-west 3, northern-ireland 3, south-east 3, south-west 3, west-midlands 3)"
            ) in result.stdout
