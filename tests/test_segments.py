"""Segment rules: parsing with positions, SQL on both backends, priority, counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from newsletter.db import Database, open_database
from newsletter.errors import SegmentError
from newsletter.members.segments import count_members, load_segments
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.regions import REGION_SLUGS

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "subscribers" / "segments.yaml"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "segments.yaml"
    path.write_text(body, "utf-8")
    return path


def seed(db: Database) -> None:
    people = [
        ("a@example.org", "london", "member", "Camden Council", {"committee": "digital"}, 2019),
        ("b@example.org", "london", "associate", "camden council", {"committee": "data"}, 2021),
        ("c@example.org", "wales", "associate", None, {}, 2023),
        ("d@example.org", None, "student", "Uni", {"committee": "digital"}, 2024),
        ("e@example.org", "scotland", None, None, {}, 2020),
        ("f@example.org", "london", "member", None, {}, 2018),
    ]
    with db.write_session() as session:
        for email, region, mtype, org, attrs, year in people:
            session.add(Subscriber(email=email, email_key=email, region=region, member_type=mtype,
                                   organisation=org, attributes=attrs,
                                   joined_at=datetime(year, 6, 1, tzinfo=UTC)))
        session.flush()
        session.execute(Subscriber.__table__.update().where(Subscriber.email == "f@example.org")
                        .values(status=SubscriberStatus.UNSUBSCRIBED))


def emails(db: Database, clause) -> set[str]:  # type: ignore[no-untyped-def]
    with db.session() as session:
        return set(session.scalars(select(Subscriber.email).where(clause)))


def test_sample_file_has_one_segment_per_region_in_priority_order() -> None:
    seg = load_segments(SAMPLE)
    assert seg.names[:12] == list(REGION_SLUGS)
    assert "associates" in seg.names
    line, col = seg.location("london")
    assert SAMPLE.read_text().splitlines()[line - 1][col - 1:].startswith("london:")


def test_errors_name_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, """priority: [north, wales]
segments:
  wales:
    rule: {region: Cymru}
  north:
    rule:
      any:
        - region: Narnia
        - colour: red
        - joined_before: yesterday
""")
    with pytest.raises(SegmentError) as exc:
        load_segments(path)
    found = {(p.line, p.col, p.message.split(" '")[0].split(" ")[0]) for p in exc.value.problems}
    messages = "\n".join(str(p) for p in exc.value.problems)
    assert f"{path}:8:19: error: unknown region 'Narnia'" in messages
    assert f"{path}:9:11: error: unknown rule key 'colour'" in messages
    assert f"{path}:10:26: error: 'joined_before' needs a date" in messages
    assert len(found) == 3


def test_priority_must_name_known_segments(tmp_path: Path) -> None:
    path = write(tmp_path, "priority: [wales, nowhere]\nsegments:\n  wales: {rule: {region: wales}}\n")
    with pytest.raises(SegmentError, match=r"segments.yaml:1:19: error: priority names unknown segment"):
        load_segments(path)


def test_rule_trees_compile_to_sql(db: Database, tmp_path: Path) -> None:
    seed(db)
    path = write(tmp_path, """segments:
  london-members:
    rule: {region: Greater London, member_type: Member}
  not-london:
    rule: {not: {region: ldn}}
  digital-or-welsh:
    rule:
      any:
        - attributes: {committee: digital}
        - region: [Cymru, alba]
  committees:
    rule: {attributes: {committee: [data, digital]}}
  camden:
    rule: {organisation: CAMDEN COUNCIL}
  recent:
    rule: {all: [{joined_after: 2020-12-31}, {joined_before: "2024-01-01"}]}
""")
    seg = load_segments(path)
    assert seg.summary("london-members") == "region = london and member_type = member"
    assert emails(db, seg.rule_clause("london-members")) == {"a@example.org", "f@example.org"}
    # `not` includes members whose region is blank
    assert emails(db, seg.rule_clause("not-london")) == {"c@example.org", "d@example.org", "e@example.org"}
    assert emails(db, seg.rule_clause("digital-or-welsh")) == {
        "a@example.org", "c@example.org", "d@example.org", "e@example.org"}
    assert emails(db, seg.rule_clause("committees")) == {"a@example.org", "b@example.org", "d@example.org"}
    assert emails(db, seg.rule_clause("camden")) == {"a@example.org", "b@example.org"}
    assert emails(db, seg.rule_clause("recent")) == {"b@example.org", "c@example.org"}


def test_priority_gives_each_member_exactly_one_segment(db: Database, tmp_path: Path) -> None:
    seed(db)
    path = write(tmp_path, """priority: [associates, london, everyone]
segments:
  london: {rule: {region: london}}
  associates: {rule: {member_type: associate}}
  everyone: {rule: {not: {region: scotland}}}
""")
    seg = load_segments(path)
    assigned = {n: emails(db, seg.assigned_clause(n)) for n in seg.names}
    assert assigned == {"associates": {"b@example.org", "c@example.org"},
                        "london": {"a@example.org", "f@example.org"}, "everyone": {"d@example.org"}}
    with db.session() as session:
        # counts are of active members only (f is unsubscribed)
        assert count_members(session, seg, "london") == 1


def test_counting_is_one_sql_query(db: Database) -> None:
    seed(db)
    seg = load_segments(SAMPLE)
    statements: list[str] = []

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.session() as session:
            assert count_members(session, seg, "london") == 2
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1 and "count(*)" in queries[0].lower()


def test_list_json_counts_match_a_direct_query(cli, project: Path, db_url: str,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    assert cli("subscribers", "import", "subscribers/sample.csv", "--json").exit_code == 0
    assert cli("subscribers", "unsubscribe", "marcus.okafor@example.org").exit_code == 0
    result = cli("segments", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    direct = open_database(db_url)
    try:
        with direct.engine.connect() as conn:
            for region in REGION_SLUGS:
                n = conn.execute(text("SELECT count(*) FROM subscribers WHERE status = 'active' "
                                      "AND region = :r"), {"r": region}).scalar()
                assert rows[region]["count"] == n
            n = conn.execute(text("SELECT count(*) FROM subscribers WHERE status = 'active' "
                                  "AND member_type = 'associate'")).scalar()
            assert rows["associates"]["count"] == n
            total = conn.execute(select(func.count()).select_from(Subscriber)).scalar()
    finally:
        direct.dispose()
    assert total == 40
    assert rows["west-midlands"]["count"] == 2 and rows["london"]["rule"] == "region = london"
    shown = json.loads(cli("segments", "show", "london", "--limit", "2", "--json").stdout)
    assert shown["count"] == rows["london"]["count"] and len(shown["members"]) == 2


def test_check_command(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("segments", "check").exit_code == 0
    (project / "subscribers" / "segments.yaml").write_text("segments:\n  x: {rule: {region: Mars}}\n")
    bad = cli("segments", "check")
    assert bad.exit_code == 2
    assert "segments.yaml:2:22: error: unknown region 'Mars'" in bad.stderr


def test_attribute_values_compare_as_text(db: Database, tmp_path: Path) -> None:
    with db.write_session() as session:
        session.add(Subscriber(email="y@example.org", email_key="y@example.org",
                               attributes={"year": "2024", "board": "true"}))
    path = write(tmp_path, "segments:\n  y: {rule: {attributes: {year: 2024, board: true}}}\n"
                           "  n: {rule: {attributes: {year: [2023, '2025']}}}\n")
    seg = load_segments(path)
    assert emails(db, seg.rule_clause("y")) == {"y@example.org"}
    assert emails(db, seg.rule_clause("n")) == set()


def test_segment_names_are_slugs_and_wrong_values_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, """segments:
  "../../../evil": {rule: {region: london}}
  Wales: {rule: {region: wales}}
  ok:
    rule: {member_type: 5, attributes: {committee: {x: 1}}}
    descripton: typo
""")
    with pytest.raises(SegmentError) as exc:
        load_segments(path)
    found = [(p.line, p.col, p.message, p.hint) for p in exc.value.problems]
    assert found[:2] == [
        (2, 3, "segment name '../../../evil' is not a slug",
         "use lower-case letters, digits and hyphens (at most 64), e.g. north-east"),
        (3, 3, "segment name 'Wales' is not a slug",
         "use lower-case letters, digits and hyphens (at most 64), e.g. north-east"),
    ]
    assert (5, 25, "'member_type' values must be plain text, got 5", None) in found
    assert (6, 5, "unknown field 'descripton' in segment 'ok'", "did you mean 'description'?") in found
    assert any(line == 5 and message.startswith("'attributes.committee' needs a value") for line, _, message, _ in found)


def test_text_rules_ignore_case_and_contains_matches_part_of_a_value(db: Database, tmp_path: Path) -> None:
    with db.write_session() as session:
        for email, role, org in (("h1@example.org", "Head of IT", "Fife Council"),
                                 ("h2@example.org", " head of it ", "Perth & Kinross Council"),
                                 ("h3@example.org", "Deputy Head of IT Services", "NHS Fife"),
                                 ("x@example.org", "Analyst", "Fife 100% Digital"),
                                 ("y@example.org", None, None)):
            session.add(Subscriber(email=email, email_key=email, organisation=org,
                                   attributes={"role": role} if role else {}))
    path = write(tmp_path, """segments:
  heads-of-it:
    rule: {attributes: {role: head of it}}
  it-leaders:
    rule: {attributes: {role: {contains: [head of, director]}}}
  fife:
    rule: {organisation: {contains: FIFE}}
  councils:
    rule: {organisation: [fife council, "PERTH & KINROSS COUNCIL"]}
  percent:
    rule: {organisation: {contains: "100%"}}
""")
    seg = load_segments(path)
    assert emails(db, seg.rule_clause("heads-of-it")) == {"h1@example.org", "h2@example.org"}
    assert emails(db, seg.rule_clause("it-leaders")) == {"h1@example.org", "h2@example.org", "h3@example.org"}
    assert emails(db, seg.rule_clause("fife")) == {"h1@example.org", "h3@example.org", "x@example.org"}
    assert emails(db, seg.rule_clause("councils")) == {"h1@example.org", "h2@example.org"}
    assert emails(db, seg.rule_clause("percent")) == {"x@example.org"}  # % is a character, not a wildcard
    assert seg.summary("it-leaders") == "attributes.role contains any of [head of, director]"
    assert seg.summary("fife") == "organisation contains FIFE"


def test_a_bad_contains_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "segments:\n  x:\n    rule: {attributes: {role: {contains: []}}}\n"
                           "  y:\n    rule: {attributes: {role: {startswith: a}}}\n")
    with pytest.raises(SegmentError) as exc:
        load_segments(path)
    messages = [(p.line, p.message) for p in exc.value.problems]
    assert (3, "'attributes.role' needs a value or a non-empty list of values") in messages
    assert (5, "'attributes.role' needs a value, a list of values or {contains: text}") in messages


def test_left_out_is_exactly_the_members_eligible_leaves_out(db: Database) -> None:
    """Batches are read against `left_out` (through its partial index), freezes and counts use
    `eligible`: the two must split every kind of member between them, with nobody in both."""
    from datetime import timedelta

    from sqlalchemy import true

    from newsletter.members import eligible, left_out

    now = datetime.now(UTC)
    kinds = [(status, email, paused) for status in SubscriberStatus
             for email in (True, False) for paused in (None, now - timedelta(days=1), now + timedelta(days=1))]
    with db.session() as session:
        for i, (status, email, paused) in enumerate(kinds):
            session.add(Subscriber(email=f"k{i}@example.org" if email else None,
                                   email_key=f"k{i}@example.org" if email else None,
                                   status=status.value, paused_until=paused))
    with db.session() as session:
        everyone = set(session.scalars(select(Subscriber.id)))
        sendable = set(session.scalars(select(Subscriber.id).where(eligible(true(), at=now))))
        gone = set(session.scalars(select(Subscriber.id).where(left_out(at=now))))
        by_id = {s.id: (s.status, s.email is not None, s.paused_until) for s in session.scalars(select(Subscriber))}
    assert sendable.isdisjoint(gone) and sendable | gone == everyone
    # and the ones sent to are the active members with an address and no pause still running
    assert {by_id[i][0] for i in sendable} == {"active"} and all(by_id[i][1] for i in sendable)
    assert len(sendable) == 2  # no pause, or a pause that has ended
