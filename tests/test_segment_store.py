"""Segments live in the database: seeded from subscribers/segments.yaml, changed in the console or
by `segments apply`, read by every reader (dry run, send, coverage, schedule, counts), exported
to YAML that applies back to the same rules (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from console_support import ADMIN, make_console

from newsletter.db import Database
from newsletter.errors import SegmentError
from newsletter.members import (
    apply_segments,
    count_members,
    export_segments,
    load_segment_set,
    load_segments,
    save_segment,
    segment_history,
)


def _use_db(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)


def test_seeded_from_the_file_when_empty_then_the_database_is_the_truth(project: Path, db: Database) -> None:
    seeded = load_segment_set(db, project)
    from_file = load_segments(project / "subscribers" / "segments.yaml")
    assert seeded.names == from_file.names and seeded.priority == from_file.priority
    assert all(seeded.get(n).rule == from_file.get(n).rule for n in seeded.names)
    (project / "subscribers" / "segments.yaml").write_text("segments:\n  only: {rule: {region: wales}}\n")
    assert load_segment_set(db, project).names == from_file.names  # the file is only the seed
    assert {c.action for c in segment_history(db)} == {"seed"}


def test_a_segment_changed_in_the_console_is_used_by_the_next_dry_run(
        project: Path, db: Database, db_url: str, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _use_db(monkeypatch, db_url)
    console = make_console(project, db, db_url)
    before = cli("send", "issues/2026-12.yaml", "--dry-run", "--json")
    assert before.exit_code == 0, before.stderr
    london_before = next(s for s in json.loads(before.stdout) if s["segment"] == "london")["audience"]
    console.login(ADMIN)
    page = console.client.get("/admin/segments/london")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    saved = console.client.post("/admin/segments/london", data={
        "csrf": token, "rule": "region: [london, south-east]", "description": "London and the South East"})
    assert saved.status_code == 303
    after = cli("send", "issues/2026-12.yaml", "--dry-run", "--json")
    rows = {s["segment"]: s for s in json.loads(after.stdout)}
    assert rows["london"]["audience"] > london_before
    # London comes before south-east in the priority list: the South East's members now get London's variant
    assert rows["south-east"]["claimed_by_earlier"].get("london", 0) == rows["london"]["audience"] - london_before
    listed = cli("segments", "list", "--json")
    assert next(r for r in json.loads(listed.stdout) if r["name"] == "london")["rule"] == "region in [london, south-east]"


def test_a_rule_that_does_not_compile_is_refused_with_the_reason(project: Path, db: Database, db_url: str) -> None:
    with pytest.raises(SegmentError, match="unknown region 'Narnia'"):
        save_segment(db, project, "london", "region: Narnia", actor="console:ann")
    with pytest.raises(SegmentError, match="unknown rule key 'colour'"):
        save_segment(db, project, "london", "colour: red", actor="console:ann")
    with pytest.raises(SegmentError, match="invalid YAML"):
        save_segment(db, project, "london", "region: [london", actor="console:ann")
    assert load_segment_set(db, project).summary("london") == "region = london"
    console = make_console(project, db, db_url)
    console.login(ADMIN)
    token = console.csrf("/admin/segments/new")
    refused = console.client.post("/admin/segments/new", data={"csrf": token, "create": "yes", "name": "fen",
                                                               "rule": "region: Fenland"})
    assert refused.status_code == 400 and "unknown region &#39;Fenland&#39;" in refused.text
    live = console.client.post("/admin/segments/preview", data={"csrf": token, "rule": "region: Fenland"}).json()
    assert live["ok"] is False and "line 1, column 9: unknown region 'Fenland'" in live["error"]
    counted = console.client.post("/admin/segments/preview", data={"csrf": token, "rule": "region: wales"}).json()
    assert counted["ok"] is True and counted["count"] == len(counted["sample"]) > 0
    assert all(m["region"] == "wales" for m in counted["sample"])


def test_export_writes_yaml_that_apply_reads_back_to_the_same_rules(
        project: Path, db: Database, db_url: str, cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _use_db(monkeypatch, db_url)
    save_segment(db, project, "digital-leads", "all:\n  - any: [{region: [london, SE]}, {attributes: {committee: digital}}]\n"
                 "  - not: {member_type: student}\n  - joined_after: 2020-12-31\n", actor="console:ann", create=True)
    exported = cli("segments", "export", "--out", str(tmp_path / "out.yaml"))
    assert exported.exit_code == 0, exported.stderr
    original = load_segment_set(db, project)
    from_export = load_segments(tmp_path / "out.yaml")
    assert from_export.names == original.names and from_export.priority == original.priority
    assert all(from_export.get(n).rule == original.get(n).rule for n in original.names)
    # apply it to a fresh database: the same rules
    other_url = db_url + "-other" if db_url.startswith("sqlite") else None
    if other_url:
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", other_url)
        (project / "subscribers" / "segments.yaml").unlink()
        applied = cli("segments", "apply", str(tmp_path / "out.yaml"))
        assert applied.exit_code == 0, applied.stderr
        assert "14 created" in applied.stdout or "created" in applied.stdout
        again = cli("segments", "export")
        assert again.stdout == (tmp_path / "out.yaml").read_text()
    # applying the export to the same database changes nothing
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    same = cli("segments", "apply", str(tmp_path / "out.yaml"))
    assert same.exit_code == 0 and "0 created, 0 updated, 0 deleted" in same.stdout


def test_apply_versions_each_change_and_refuses_a_bad_file_whole(project: Path, db: Database, tmp_path: Path) -> None:
    load_segment_set(db, project)
    changed = tmp_path / "segments.yaml"
    changed.write_text("priority: [wales]\nsegments:\n  wales: {rule: {region: [wales, south-west]}}\n"
                       "  newcomers: {rule: {joined_after: 2025-01-01}}\n")
    result = apply_segments(db, changed, actor="cli:ann")
    assert result.created == ("newcomers",) and result.updated == ("wales",) and "london" in result.deleted
    assert load_segment_set(db, project).names == ["wales", "newcomers"]
    history = segment_history(db, "wales")
    assert [(c.version, c.action, c.actor) for c in history] == [(2, "update", "cli:ann"), (1, "seed", "seed:segments.yaml")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments:\n  wales: {rule: {region: Atlantis}}\n")
    with pytest.raises(SegmentError, match=r"bad.yaml:2:26: error: unknown region 'Atlantis'"):
        apply_segments(db, bad, actor="cli:ann")
    assert load_segment_set(db, project).names == ["wales", "newcomers"]
    assert export_segments(db, project).count("rule:") == 2


def test_the_console_editor_reads_the_same_rule_language_as_the_file(project: Path, db: Database) -> None:
    """contains and case-insensitive matching, added to segments.yaml's rules, work in the editor too."""
    from newsletter.members import import_sample, preview_rule

    import_sample(db, project)
    found = preview_rule(db, "organisation: {contains: COUNCIL}")
    assert found.count > 0 and found.count == preview_rule(db, "organisation: {contains: council}").count
    save_segment(db, project, "councils", "organisation: {contains: council}", actor="console:ann", create=True)
    with db.session() as session:
        assert count_members(session, load_segment_set(db, project), "councils") == found.count
