"""Issue manifests: resolution rules, every kind of problem with its position, DST handling, `check`."""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.content.manifest import Edition, check_manifest, load_manifest
from newsletter.errors import ManifestError, Problem
from newsletter.members import defined_segments

DATA = Path(__file__).parent / "data" / "manifests"

SEGMENTS_YAML = """\
priority: [scotland, london, north-east]
segments:
  scotland: {rule: {region: scotland}}
  london: {rule: {region: london}}
  north-east: {rule: {region: north-east}}
"""

BASE = """\
edition: "2026-12"
title: December digest
subject: Your December digest
preheader: The month in local-government IT
intro: Hello members.
"""


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """A minimal project: a template with its entry file, the fixture articles, no segments.yaml."""
    (tmp_path / "templates" / "digest").mkdir(parents=True)
    (tmp_path / "templates" / "digest" / "email.mjml.j2").write_text("<mjml></mjml>\n")
    shutil.copytree(DATA / "articles", tmp_path / "issues" / "articles")
    return tmp_path


def settings_for(root: Path) -> Settings:
    return load_settings(project_dir=root)


def write(root: Path, text: str, name: str = "m.yaml") -> Path:
    path = root / "issues" / name
    if text.startswith(BASE):  # tests append indented triple-quoted fields to BASE
        text = BASE + textwrap.dedent(text[len(BASE):])
    path.write_text(text)
    return path


def problems_for(root: Path, text: str) -> list[Problem]:
    return check_manifest(write(root, text), settings_for(root), defined_segments(root))


def only(problems: list[Problem]) -> Problem:
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) == 1, [str(p) for p in problems]
    return errors[0]


def slugs(variant) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.slug for a in variant.articles]


# --- resolution ---------------------------------------------------------------------------------

def test_clean_manifest_resolves_order_query_add_omit_and_region(proj: Path) -> None:
    shutil.copy(DATA / "clean.yaml", proj / "issues" / "clean.yaml")
    edition = load_manifest(proj / "issues" / "clean.yaml", settings_for(proj))
    assert isinstance(edition, Edition)
    assert (edition.id, edition.title, edition.template) == ("2026-12", "December digest", "digest")
    by = {v.segment: v for v in edition.variants}
    assert list(by) == ["scotland", "london", "north-east"]  # manifest order
    # explicit slugs first (featured dropped), then query newest first; regional articles lead
    assert slugs(by["scotland"]) == [
        "scottish-cio-council", "modern-leadership", "north-east-mayor", "london-digital-census"]
    assert slugs(by["north-east"]) == [
        "north-east-mayor", "modern-leadership", "scottish-cio-council", "london-digital-census"]
    # london omits modern-leadership and adds innovation-cycle (national, so after London's own)
    assert slugs(by["london"]) == [
        "london-digital-census", "innovation-cycle", "scottish-cio-council", "north-east-mayor"]
    for v in edition.variants:
        assert v.featured is not None and v.featured.slug == "gdpr-roadmap"
        assert "gdpr-roadmap" not in slugs(v)
        assert v.region == v.segment
        assert v.zone == "Europe/London"
        assert v.intro_markdown == "Hello **members**."
        assert v.preheader == "The month in local-government IT"
    assert by["scotland"].subject == "Your December digest, Scotland"
    assert by["london"].subject == "Your December digest"
    assert by["scotland"].send_at == datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
    assert by["london"].send_at == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert by["london"].send_at.tzinfo is not None


def test_query_max_counts_only_new_articles_and_since_filters(proj: Path) -> None:
    path = write(proj, BASE + """\
        articles:
          slugs: [scottish-cio-council]
          query: {tags: [devolution, cio-council, data, leadership], since: 2026-11-06, max: 2}
        segments: {everyone: {}}
        """)
    (variant,) = load_manifest(path, settings_for(proj)).variants
    # scottish-cio-council is explicit, so the query's two are the next newest after it
    assert slugs(variant) == ["scottish-cio-council", "north-east-mayor", "modern-leadership"]
    assert variant.region is None and variant.featured is None and variant.send_at is None


def test_query_regions_keeps_national_articles(proj: Path) -> None:
    path = write(proj, BASE + """\
        articles: {query: {regions: [Scotland], since: 2026-11-01}}
        segments: {everyone: {region: null}}
        """)
    (variant,) = load_manifest(path, settings_for(proj)).variants
    assert slugs(variant) == [
        "scottish-cio-council", "gdpr-roadmap", "data-bill-right-to-be-forgotten", "modern-leadership"]


def test_list_shorthand_and_segment_overrides(proj: Path) -> None:
    path = write(proj, BASE + """\
        featured: gdpr-roadmap
        articles: [modern-leadership, innovation-cycle]
        segments:
          london: {}
          members-in-the-north:
            region: NE
            omit: [gdpr-roadmap]
            add: [north-east-mayor]
            intro: Hello the North.
            preheader: Northern news
        """)
    london, v = load_manifest(path, settings_for(proj)).variants
    assert london.featured is not None and london.region == "london"
    assert v.featured is None  # omitting the featured article leaves the segment without one
    assert v.region == "north-east"
    assert slugs(v) == ["north-east-mayor", "modern-leadership", "innovation-cycle"]
    assert (v.intro_markdown, v.preheader) == ("Hello the North.", "Northern news")


def test_zone_aware_send_at_is_converted_to_the_manifest_zone(proj: Path) -> None:
    path = write(proj, BASE + """\
        timezone: Europe/Paris
        send_at: 2026-12-03T08:00:00+00:00
        articles: [modern-leadership]
        segments: {london: {send_at: "2026-12-03 10:15"}}
        """)
    (v,) = load_manifest(path, settings_for(proj)).variants
    assert v.zone == "Europe/Paris"
    assert v.send_at == datetime(2026, 12, 3, 9, 15, tzinfo=UTC)
    assert v.send_at.utcoffset() == timedelta(hours=1)


# --- problems, one kind at a time ---------------------------------------------------------------

def test_unknown_fields_everywhere(proj: Path) -> None:
    problems = problems_for(proj, BASE + """\
        featued: gdpr-roadmap
        articles: {slugs: [modern-leadership], qeury: {}}
        segments: {london: {subjct: Hi}}
        """)
    found = {(p.line, p.message, p.hint) for p in problems}
    assert (6, "unknown field 'featued' in the manifest", "did you mean 'featured'?") in found
    assert (7, "unknown field 'qeury' in articles", "did you mean 'query'?") in found
    assert (8, "unknown field 'subjct' in segment 'london'", "did you mean 'subject'?") in found
    assert len(problems) == 3


def test_missing_required_fields(proj: Path) -> None:
    problems = problems_for(proj, "edition: x\narticles: [modern-leadership]\n")
    assert {p.message for p in problems} == {
        "missing required field 'title'", "missing required field 'subject'",
        "missing required field 'preheader'", "missing required field 'segments'"}


def test_unknown_slug_suggests_close_match(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "articles:\n  - modern-leadership\n  - gdpr-roadmp\nsegments: {london: {}}\n"))
    assert (p.line, p.col) == (8, 5)
    assert p.message == "unknown article 'gdpr-roadmp'"
    assert p.hint == "did you mean 'gdpr-roadmap'?"


def test_duplicate_article_in_slugs_and_in_add(proj: Path) -> None:
    problems = problems_for(proj, BASE + """\
        articles: [modern-leadership, gdpr-roadmap, modern-leadership]
        segments:
          london: {add: [gdpr-roadmap]}
        """)
    assert len(problems) == 2, problems
    assert problems[0].line == 6 and "duplicate article 'modern-leadership'" in problems[0].message
    assert problems[1].line == 8 and problems[1].message.startswith("duplicate article: 'gdpr-roadmap'")


def test_featured_not_found(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "featured: gdpr-road-map\narticles: [modern-leadership]\nsegments: {london: {}}\n"))
    assert p.line == 6 and p.message == "unknown article 'gdpr-road-map'" and "gdpr-roadmap" in (p.hint or "")


@pytest.mark.parametrize("value, message", [
    ("2026-12-03T25:00", "bad send_at time '2026-12-03T25:00'"),
    ("next thursday", "bad send_at time 'next thursday'"),
    ("2026-12-03", "send_at 2026-12-03 has no time of day"),
])
def test_bad_send_at(proj: Path, value: str, message: str) -> None:
    p = only(problems_for(proj, BASE + f"send_at: {value}\narticles: [modern-leadership]\nsegments: {{london: {{}}}}\n"))
    assert (p.line, p.message) == (6, message)
    assert p.hint


def test_unknown_zone_with_suggestion(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "timezone: Europe/Londn\nsend_at: 2026-12-03T08:00\narticles: [modern-leadership]\nsegments: {london: {}}\n"))
    assert p.line == 6 and p.message == "unknown time zone 'Europe/Londn'"
    assert p.hint == "did you mean 'Europe/London'?"


def test_spring_forward_gap_suggests_a_valid_time(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "articles: [modern-leadership]\nsegments:\n  london: {send_at: 2027-03-28T01:30}\n"))
    assert p.line == 8
    assert p.message == (
        "2027-03-28 01:30 does not exist in Europe/London: the clocks go forward over it; "
        "did you mean 2027-03-28 02:30 BST (01:30 UTC)?"
    )


def test_fall_back_time_needs_offset(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "send_at: 2026-10-25T01:30\narticles: [modern-leadership]\nsegments: {london: {}}\n"))
    assert p.message.startswith("2026-10-25 01:30 happens twice in Europe/London (the clocks go back)")
    assert "2026-10-25T01:30+01:00" in p.message and "2026-10-25T01:30+00:00" in p.message
    path = write(proj, BASE + "send_at: 2026-10-25T01:30:00+00:00\narticles: [modern-leadership]\nsegments: {london: {}}\n")
    (v,) = load_manifest(path, settings_for(proj)).variants
    # (aware datetimes with fold=1 never compare equal across zones: compare in UTC)
    assert v.send_at.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert v.send_at.utcoffset() == timedelta(0)  # the second 01:30, GMT


def test_unknown_template(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "template: digst\narticles: [modern-leadership]\nsegments: {london: {}}\n"))
    assert (p.line, p.message, p.hint) == (6, "unknown template 'digst'", "did you mean 'digest'?")
    (proj / "templates" / "plain").mkdir()
    p = only(problems_for(proj, BASE + "template: plain\narticles: [modern-leadership]\nsegments: {london: {}}\n"))
    assert p.message == "template 'plain' has no email.mjml.j2"


def test_segment_not_defined_in_segments_yaml(proj: Path) -> None:
    text = BASE + "articles: [modern-leadership]\nsegments:\n  london: {}\n  scotlnd: {}\n"
    assert problems_for(proj, text) == []  # no segments.yaml yet: any name goes
    (proj / "subscribers").mkdir()
    (proj / "subscribers" / "segments.yaml").write_text(SEGMENTS_YAML)
    p = only(problems_for(proj, text))
    assert (p.line, p.col) == (9, 3)
    assert p.message == "segment 'scotlnd' is not defined in subscribers/segments.yaml"
    assert p.hint == "did you mean 'scotland'?"


def test_article_omitted_by_every_segment_and_empty_segment(proj: Path) -> None:
    problems = problems_for(proj, BASE + """\
        articles: [modern-leadership, innovation-cycle]
        segments:
          london: {omit: [innovation-cycle]}
          scotland: {omit: [innovation-cycle, modern-leadership]}
        """)
    messages = {(p.line, p.message) for p in problems}
    assert messages == {
        (9, "segment 'scotland' has no articles"),
        (6, "article 'innovation-cycle' is omitted by every segment"),
    }


def test_omit_of_article_not_in_edition(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "articles: [modern-leadership]\nsegments: {london: {omit: [innovation-cycle]}}\n"))
    assert "does not include" in p.message


def test_no_segments(proj: Path) -> None:
    p = only(problems_for(proj, BASE + "articles: [modern-leadership]\nsegments: {}\n"))
    assert p.message.startswith("no segments")


def test_article_load_problems_are_included(proj: Path) -> None:
    (proj / "issues" / "articles" / "broken.md").write_text("---\ntitle: Broken\npublished: 2026-11-01\n---\n")
    problems = problems_for(proj, BASE + "articles: [modern-leadership]\nsegments: {london: {}}\n")
    assert problems and all(p.file.endswith("broken.md") for p in problems)
    assert any("url" in p.message for p in problems)
    # not used by this manifest: a warning, and the edition still loads
    assert {p.severity for p in problems} == {"warning"}
    assert load_manifest(proj / "issues" / "m.yaml", settings_for(proj)).variants
    problems = problems_for(proj, BASE + "articles: [modern-leadership, broken]\nsegments: {london: {}}\n")
    errors = [p for p in problems if p.severity == "error"]
    assert [p.message for p in errors] == ["article 'broken' could not be loaded"]


def test_invalid_yaml_and_duplicate_keys(proj: Path) -> None:
    (p,) = problems_for(proj, "edition: [unclosed\n")
    assert p.message.startswith("invalid YAML")
    problems = problems_for(proj, BASE + "articles: [modern-leadership]\nsegments: {london: {}}\ntitle: again\n")
    assert [(q.line, q.message) for q in problems] == [(8, "duplicate key 'title'")]


def test_load_manifest_raises_all_problems_at_once(proj: Path) -> None:
    shutil.copy(DATA / "three-mistakes.yaml", proj / "issues" / "x.yaml")
    with pytest.raises(ManifestError) as caught:
        load_manifest(proj / "issues" / "x.yaml", settings_for(proj))
    assert len(caught.value.problems) == 3
    assert caught.value.exit_code == 2


# --- the `check` command ------------------------------------------------------------------------

def test_check_prints_the_three_planted_mistakes_and_exits_2(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    target = project / "planted"
    shutil.copytree(DATA, target)
    result = cli("check", "planted/three-mistakes.yaml")
    assert result.exit_code == 2, result
    lines = [line for line in result.stdout.splitlines() if line.startswith("planted/three-mistakes.yaml:")]
    assert lines == [
        "planted/three-mistakes.yaml:8:10: error: bad send_at time '2026-12-03T25:00' "
        "(hint: use ISO 8601, e.g. 2026-12-03T08:00 (local time) or 2026-12-03T08:00:00+00:00)",
        "planted/three-mistakes.yaml:11:7: error: unknown article 'gdpr-roadmp' (hint: did you mean 'gdpr-roadmap'?)",
        "planted/three-mistakes.yaml:14:7: error: duplicate article 'modern-leadership' in articles.slugs "
        "(already on line 12) (hint: list each article once)",
    ]


def test_check_clean_manifest_exits_0(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(DATA, project / "planted")
    result = cli("check", "planted/clean.yaml")
    assert "error:" not in result.stdout
    assert "manifest OK" in result.stdout and "gates: all passed" in result.stdout
    assert result.exit_code == 0, result


def test_check_reports_a_failing_gate_and_exits_1(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(DATA, project / "planted")
    entry = project / "templates" / "digest" / "email.mjml.j2"
    entry.write_text(entry.read_text("utf-8").replace(
        "</mj-body>", '<mj-raw><a href="/relative">x</a></mj-raw></mj-body>'), "utf-8")
    result = cli("check", "planted/clean.yaml")
    assert result.exit_code == 1
    assert "FAIL: <a href>: URL is not absolute https or mailto: '/relative'" in result.stdout


def test_sample_manifest_has_no_manifest_problems(project: Path) -> None:
    sample = project / "issues" / "2026-12.yaml"
    problems = check_manifest(sample, load_settings(project_dir=project))
    assert problems == [], "\n".join(map(str, problems))
    edition = load_manifest(sample, load_settings(project_dir=project))
    assert edition.id == "2026-12"
    assert [v.segment for v in edition.variants] == [
        "scotland", "wales", "northern-ireland", "north-east", "north-west", "yorkshire",
        "east-midlands", "west-midlands", "east", "london", "south-east", "south-west"]
    times = {v.segment: v.send_at for v in edition.variants}
    assert times["scotland"] == datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
    assert all(t == datetime(2026, 12, 3, 8, 0, tzinfo=UTC) for s, t in times.items() if s != "scotland")


def test_yaml_timestamps_are_accepted(proj: Path) -> None:
    path = write(proj, BASE + """\
        send_at: 2026-12-03 08:00:00
        articles: [modern-leadership]
        segments:
          london: {}
          scotland: {send_at: 2026-12-03T07:30:00Z}
        """)
    london, scotland = load_manifest(path, settings_for(proj)).variants
    assert london.send_at == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert scotland.send_at == datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
    assert str(scotland.send_at.tzinfo) == "Europe/London"


@pytest.mark.parametrize("extra, message", [
    ("articles: [modern-leadership]\nsegments: [london]\n", "segments must be a mapping"),
    ("articles: [modern-leadership]\nsegments: {london: [x]}\n", "segment 'london' must be a mapping"),
    ("articles: modern-leadership\nsegments: {london: {}}\n", "articles must be a list"),
    ("articles: {query: {max: 0}}\nsegments: {london: {}}\n", "max must be a whole number"),
    ("articles: {query: {regions: [narnia]}}\nsegments: {london: {}}\n", "unknown region 'narnia'"),
    ("articles: {query: {since: last week}}\nsegments: {london: {}}\n", "bad date 'last week'"),
    ("articles: [modern-leadership]\nsegments: {london: {region: mars}}\n", "unknown region 'mars'"),
    ("edition: a/b\narticles: [modern-leadership]\nsegments: {london: {}}\n", "cannot be used as a directory name"),
])
def test_shape_errors_are_reported_not_raised(proj: Path, extra: str, message: str) -> None:
    text = BASE.replace('edition: "2026-12"\n', "") if extra.startswith("edition") else BASE
    problems = [p for p in problems_for(proj, text + extra) if p.severity == "error"]
    assert any(message in p.message for p in problems), [str(p) for p in problems]


def test_check_missing_file(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", "issues/nope.yaml")
    assert result.exit_code == 2
    assert "issues/nope.yaml:1:1: error: file not found" in result.stdout


def test_broken_segments_file_is_reported(proj: Path) -> None:
    (proj / "subscribers").mkdir()
    (proj / "subscribers" / "segments.yaml").write_text("segments: [unclosed\n")
    problems = problems_for(proj, BASE + "articles: [modern-leadership]\nsegments: {london: {}}\n")
    assert problems and all(p.file.endswith("segments.yaml") for p in problems)


def test_send_window_per_segment_and_edition(proj: Path) -> None:
    path = write(proj, BASE + """\
        send_at: 2026-12-03T08:00
        window: "07:00-20:00"
        articles: [modern-leadership]
        segments:
          london: {}
          scotland: {window: "06:30-09:00", send_at: "2026-12-03 07:00"}
        """)
    london, scotland = load_manifest(path, settings_for(proj)).variants
    assert (london.window, scotland.window) == ("07:00-20:00", "06:30-09:00")


def test_send_time_outside_its_window_and_bad_windows_are_problems(proj: Path) -> None:
    problems = problems_for(proj, BASE + """\
        send_at: 2026-12-03T08:00
        window: "07:00-20:00"
        articles: [modern-leadership]
        segments:
          london: {send_at: "2026-12-03 21:30"}
          wales: {window: "8am to 6pm"}
          east: {window: "20:00-07:00"}
        """)
    messages = sorted((p.line, p.message) for p in problems if p.severity == "error")
    assert messages == [
        (10, "send time 2026-12-03 21:30 is outside the send window 07:00-20:00"),
        (11, "cannot read send window '8am to 6pm'"),
        (12, "send window '20:00-07:00' ends before it starts"),
    ]


def test_line_breaks_in_header_fields_are_problems(proj: Path) -> None:
    problems = problems_for(proj, BASE.replace("subject: Your December digest", 'subject: "Hi\\r\\nBcc: evil@example.org"')
                            + "articles: [modern-leadership]\nsegments:\n  london: {preheader: \"a\\nb\"}\n")
    assert sorted((p.line, p.message) for p in problems if p.severity == "error") == [
        (3, "subject must be a single line"), (8, "preheader must be a single line")]


def test_a_directory_is_not_a_manifest(proj: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", str(proj / "issues"))
    assert result.exit_code == 2 and "is a directory" in result.stderr + result.stdout


def test_an_unknown_zone_does_not_hide_a_bad_send_time(proj: Path) -> None:
    problems = problems_for(proj, BASE + "timezone: Mars/Olympus\narticles: [modern-leadership]\n"
                            "segments:\n  london: {send_at: yesterday}\n")
    assert sorted(p.message for p in problems if p.severity == "error") == [
        "bad send_at time 'yesterday'", "unknown time zone 'Mars/Olympus'"]


def test_value_problems_and_cross_checks_are_listed_together(proj: Path) -> None:
    """Problems the model finds do not hide the cross-field ones, and leave out none of the
    values they are about (no second report of the same value)."""
    problems = problems_for(proj, BASE + """\
        timezone: 5
        articles:
          slugs: [modern-leadership, gdpr-roadmp]
          query: {tags: 5}
        segments:
          london: {window: "8am", add: [innovation-cycle, modern-leadership]}
          "../evil": {}
          wales: {omit: modern-leadership, send_at: 2027-03-28T01:30}
        """)
    found = sorted((p.line, p.message) for p in problems if p.severity == "error")
    assert found == [
        (6, "timezone must be an IANA time zone name such as Europe/London, not 5"),
        (8, "unknown article 'gdpr-roadmp'"),
        (9, "tags must be a list of text, not 5"),
        (11, "cannot read send window '8am'"),
        (11, "duplicate article: 'modern-leadership' is already in the edition"),
        (12, "segment name '../evil' is not a slug"),
    ], found


def test_a_segment_name_must_be_a_slug(proj: Path) -> None:
    for name in ("../../../evil", "North East", "a/b", "-x", "x" * 65):
        p = only(problems_for(proj, BASE + f"articles: [modern-leadership]\nsegments:\n  '{name}': {{}}\n"))
        assert (p.line, p.col, p.message) == (8, 3, f"segment name {name!r} is not a slug"), p
        assert "lower-case letters, digits and hyphens" in (p.hint or "")
