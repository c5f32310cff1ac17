"""Article files: the front-matter loader's errors, safe writing, filters, sample content, CLI list."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.content.articles import (
    Article,
    article_text,
    filter_articles,
    load_article,
    load_articles,
    parse_article,
    write_article,
)
from newsletter.errors import ProblemsError
from newsletter.regions import REGION_SLUGS

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "issues" / "articles"

GOOD = """---
title: A good article
author: Ann Other
published: 2026-11-20T09:00:00+00:00
url: https://www.example.org/blog/good
tags: [GDPR, data]
regions: [Cymru, south east]
---
Body text.
"""


def problems_of(text: str, slug: str = "good") -> list[str]:
    with pytest.raises(ProblemsError) as info:
        parse_article(text, slug, f"issues/articles/{slug}.md")
    return [str(p) for p in info.value.problems]


def test_good_article_parses_and_normalises() -> None:
    article = parse_article(GOOD, "good", "good.md")
    assert article.tags == ("gdpr", "data")
    assert article.regions == ("wales", "south-east")
    assert article.body == "Body text."
    assert article.published == datetime(2026, 11, 20, 9, tzinfo=UTC)


def test_missing_field_is_reported_with_file_and_line() -> None:
    text = GOOD.replace("title: A good article\n", "")
    assert problems_of(text) == ["issues/articles/good.md:2:1: error: missing field 'title'"]


def test_naive_datetime_points_at_the_published_line() -> None:
    text = GOOD.replace("2026-11-20T09:00:00+00:00", "2026-11-20T09:00:00")
    (problem,) = problems_of(text)
    assert problem.startswith("issues/articles/good.md:4:12: error: published: must include a time zone")


def test_bad_region_names_the_region_and_the_choices() -> None:
    (problem,) = problems_of(GOOD.replace("[Cymru, south east]", "[Cymru, Atlantis]"))
    assert problem.startswith("issues/articles/good.md:7:10: error: regions: unknown region 'Atlantis'")
    assert "scotland" in problem and "south-west" in problem


def test_unknown_field_points_at_its_key() -> None:
    text = GOOD.replace("tags:", "colour: blue\ntags:")
    assert problems_of(text) == [
        "issues/articles/good.md:6:1: error: unknown field 'colour' (hint: allowed: title, author, author_role, "
        "published, url, summary, image, image_alt, tags, regions, guid)"
    ]


def test_several_problems_are_reported_together() -> None:
    text = GOOD.replace("https://www.example.org/blog/good", "javascript:alert(1)").replace(
        "+00:00", ""
    )
    found = problems_of(text, "Bad Slug")
    assert len(found) == 3
    assert any("file name 'Bad Slug' is not a valid slug" in p for p in found)
    assert any(":5:6: error: url: must be an absolute http(s) URL" in p for p in found)


def test_no_front_matter() -> None:
    assert problems_of("Just text.\n") == [
        "issues/articles/good.md:1:1: error: no YAML front matter (hint: start the file with a '---' line)"
    ]


def test_load_articles_collects_problems_from_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD.replace("title: A good article\n", ""), "utf-8")
    (tmp_path / "b.md").write_bytes(b"---\ntitle: \xff\n---\n")
    (tmp_path / "c.md").write_text(GOOD, "utf-8")
    with pytest.raises(ProblemsError) as info:
        load_articles(tmp_path, base=tmp_path)
    assert [(p.file, p.line) for p in info.value.problems] == [("a.md", 2), ("b.md", 1)]
    assert "not UTF-8" in info.value.problems[1].message


@pytest.mark.parametrize(
    "title",
    [
        "<script>alert(1)</script>",
        'Tom & Jerry: "x"',
        "Newyddion o Gymru: gwasanaethau digidol ☕",
        "- looks like a list",
        "# looks like a comment",
        "no",
        "null",
        "2026-12-01",
        "'quoted' and \\ backslash",
        "[bold]Rich markup[/bold] {{ jinja }}",
    ],
)
def test_write_article_round_trips_hostile_text_exactly(tmp_path: Path, title: str) -> None:
    article = Article(
        slug="round-trip", title=title, author="Siân Ŵyn", author_role="Cadeirydd: Cymru",
        published=datetime(2026, 11, 2, 9, 30, tzinfo=timezone(timedelta(hours=1))),
        url="https://www.example.org/blog/round-trip", summary=f"Summary: {title}",
        tags=("a", "b"), regions=("wales",), guid="urn:x:1", body="---\nA body *with* markup.\n",
    )
    path = write_article(article, tmp_path)
    assert path == tmp_path / "round-trip.md"
    text = path.read_text("utf-8")
    assert "\\u" not in text and "Siân Ŵyn" in text  # non-ASCII written as itself, not escaped
    loaded = load_article(path)
    assert loaded.model_dump() == article.model_dump() | {"body": "---\nA body *with* markup."}
    assert loaded.published.utcoffset() == timedelta(hours=1)
    assert article_text(loaded) == text
    assert not list(tmp_path.glob(".*.tmp"))


def test_filter_by_tag_since_and_region() -> None:
    articles = load_articles(SAMPLES)
    gdpr = filter_articles(articles, tags=["GDPR"])
    assert {a.slug for a in gdpr} == {"gdpr-roadmap", "data-bill-right-to-be-forgotten"}
    recent = filter_articles(articles, since=date(2026, 11, 16))
    assert [a.slug for a in recent] == ["cio-council-gds-verify-nhs", "data-bill-right-to-be-forgotten"]
    welsh = {a.slug for a in filter_articles(articles, regions=["wales"])}
    assert "welsh-language-digital-services" in welsh
    assert "gdpr-roadmap" in welsh  # no regions = of interest everywhere
    assert "scottish-councils-data-sharing-pilot" not in welsh


def test_sample_articles_are_complete_and_cover_every_region() -> None:
    articles = load_articles(SAMPLES)
    assert len(articles) >= 10
    covered = {region for a in articles.values() for region in a.regions}
    assert covered == set(REGION_SLUGS)
    for slug, a in articles.items():
        assert a.url == f"https://www.example.org/blog/{slug}"
        assert a.image == f"https://www.example.org/images/{slug}.jpg"
        assert a.author and a.author_role and a.summary and a.image_alt and a.tags, slug
        assert datetime(2026, 10, 1, tzinfo=UTC) <= a.published < datetime(2026, 12, 1, tzinfo=UTC)
        assert 2 <= len([p for p in a.body.split("\n\n") if p.strip()]) <= 4, slug
        assert "socitm" not in (a.body + a.title + (a.author_role or "")).lower()


def test_cli_list_table_json_and_filters(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("articles", "list")
    assert result.exit_code == 0, result.stderr
    assert "gdpr-roadmap" in result.stdout and "modern-leadership" in result.stdout

    data = json.loads(cli("articles", "list", "--json", "--tag", "gdpr").stdout)
    assert [d["slug"] for d in data] == ["data-bill-right-to-be-forgotten", "gdpr-roadmap"]
    assert data[0]["published"] == "2026-11-16T08:30:00Z"

    since = json.loads(cli("articles", "list", "--json", "--since", "2026-11-16").stdout)
    assert len(since) == 2

    bad = cli("articles", "list", "--since", "16/11/2026")
    assert bad.exit_code == 2 and "is not a date" in bad.stderr


def test_cli_list_shows_hostile_titles_as_text(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    article = Article(
        slug="hostile", title="[red]x[/red] <b>", published=datetime(2026, 11, 30, tzinfo=UTC),
        url="https://www.example.org/blog/hostile", tags=("[bold]",),
    )
    write_article(article, project / "issues" / "articles")
    result = cli("articles", "list", "--tag", "[bold]")
    assert result.exit_code == 0
    assert "[red]x[/red] <b>" in result.stdout and "[bold]" in result.stdout


def test_cli_list_reports_broken_files_and_exits_2(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (project / "issues" / "articles" / "broken.md").write_text("---\ntitle: x\n---\n", "utf-8")
    result = cli("articles", "list")
    assert result.exit_code == 2
    assert "issues/articles/broken.md:2:1: error: missing field 'published'" in result.stderr


def test_articles_new_writes_a_valid_file_published_now(cli, project) -> None:
    result = cli("articles", "new", "fife-cloud-pilot", "--title", "Fife <moves> to the cloud",
                 "--url", "https://www.example.org/news/fife", "--region", "Alba", "--tag", "Cloud",
                 "--summary", "A council moves its records.")
    assert result.exit_code == 0, result.stderr
    path = project / "issues" / "articles" / "fife-cloud-pilot.md"
    article = load_article(path)
    assert (article.title, article.regions, article.tags) == ("Fife <moves> to the cloud", ("scotland",), ("cloud",))
    assert article.published.utcoffset() is not None
    assert abs((datetime.now(UTC) - article.published).total_seconds()) < 60
    listed = cli("articles", "list", "--json")
    assert "fife-cloud-pilot" in [a["slug"] for a in json.loads(listed.stdout)]
    again = cli("articles", "new", "fife-cloud-pilot", "--title", "x", "--url", "https://x.example")
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert load_article(path).title == "Fife <moves> to the cloud"
    bad = cli("articles", "new", "other", "--title", "x", "--url", "ftp://x.example", "--region", "Narnia")
    assert bad.exit_code == 2 and "--url" in bad.stderr and "--regions: unknown region 'Narnia'" in bad.stderr
    assert not (project / "issues" / "articles" / "other.md").exists()


def test_commands_find_the_project_from_below_it_or_say_where_they_looked(cli, project, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("NEWSLETTER_PROJECT_DIR")
    monkeypatch.chdir(project / "issues" / "articles")
    assert cli("check", "issues/2026-12.yaml").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    lost = cli("check", "issues/2026-12.yaml")
    assert lost.exit_code == 2
    assert f"no newsletter project in {elsewhere.resolve()} or any folder above it" in lost.stderr
    assert "[tool.newsletter]" in lost.stderr and "unknown template" not in lost.stdout + lost.stderr
    assert cli("check", str(project / "issues" / "2026-12.yaml")).exit_code == 0
