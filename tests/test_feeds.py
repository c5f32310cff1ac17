"""Feed import: per-item outcomes and reasons, dedupe, no-op re-import, updates, hostile content."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.content.articles import load_article, load_articles
from newsletter.content.feeds import ImportOutcome, canonical_link, import_feed, slugify
from newsletter.errors import ArticleError, ProblemsError

FEEDS = Path(__file__).parent / "data" / "feeds"
HOSTILE = FEEDS / "hostile.xml"
LONG_URL = "https://news.example.org/blog/" + "a" * 170


def by_guid(outcomes: list[ImportOutcome]) -> dict[str | None, ImportOutcome]:
    return {o.guid: o for o in outcomes}


def counts(outcomes: list[ImportOutcome]) -> dict[str, int]:
    return {k: sum(o.outcome == k for o in outcomes) for k in ("imported", "updated", "skipped")}


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, list[ImportOutcome]]:
    directory = tmp_path / "articles"
    return directory, import_feed(str(HOSTILE), directory)


def test_hostile_feed_outcome_and_reason_per_item(hostile: tuple[Path, list[ImportOutcome]]) -> None:
    _, outcomes = hostile
    got = by_guid(outcomes)
    assert [o.guid for o in outcomes] == [
        "hostile-script", "hostile-ampersand", "hostile-welsh", "hostile-no-summary",
        "hostile-long-url", "hostile-bad-date", "hostile-javascript-link", "hostile-duplicate-link",
    ]
    for guid in ("hostile-script", "hostile-ampersand", "hostile-welsh", "hostile-no-summary",
                 "hostile-long-url", "hostile-bad-date"):
        assert (got[guid].outcome, got[guid].reason) == ("imported", "new item"), guid
    js = got["hostile-javascript-link"]
    assert js.outcome == "skipped"
    assert js.reason.startswith("link rejected: javascript: URLs are not allowed")
    assert js.slug is None and js.path is None
    dup = got["hostile-duplicate-link"]
    assert dup.outcome == "skipped"
    assert dup.reason.startswith("duplicate link https://news.example.org/blog/council-budget-2027/#reposted")
    assert "already imported as" in dup.reason and "hostile-script" in dup.reason
    assert dup.slug == got["hostile-script"].slug
    assert counts(outcomes) == {"imported": 6, "updated": 0, "skipped": 2}


def test_titles_are_plain_text_decoded_once(hostile: tuple[Path, list[ImportOutcome]]) -> None:
    directory, outcomes = hostile
    got = by_guid(outcomes)
    tom = load_article(directory / f"{got['hostile-ampersand'].slug}.md")
    assert tom.title == 'Tom & Jerry: "cat & mouse" digital services'
    assert tom.summary == "Fish & chips click me and this. See about us."
    raw = (directory / f"{tom.slug}.md").read_text("utf-8")
    assert "&amp;" not in raw and "&quot;" not in raw
    script = load_article(directory / f"{got['hostile-script'].slug}.md")
    # the feed escaped the markup, so it is text: kept as text, escaped wherever it is shown
    assert script.title == '<script>alert("owned")</script> Council budget 2027'
    assert script.summary == "The budget is out."  # markup inside the description is removed


def test_no_javascript_and_every_url_absolute(hostile: tuple[Path, list[ImportOutcome]]) -> None:
    directory, outcomes = hostile
    tom = by_guid(outcomes)["hostile-ampersand"]
    assert [n.split(":")[0] for n in tom.notes] == ["link removed", "link removed"]
    assert "javascript: URLs are not allowed" in tom.notes[0]
    assert "data: URLs are not allowed" in tom.notes[1]
    for path in directory.glob("*.md"):
        text = path.read_text("utf-8")
        assert "javascript:" not in text.lower() and "data:" not in text and "<script" not in text.split("---")[2]
        for url in re.findall(r"\]\(([^)\s]+)\)", text):
            assert url.startswith("https://"), (path.name, url)
    for article in load_articles(directory).values():
        assert article.url.startswith("https://news.example.org/")
        assert article.image is None or article.image.startswith("https://")


def test_relative_links_and_images_become_absolute(hostile: tuple[Path, list[ImportOutcome]]) -> None:
    directory, outcomes = hostile
    got = by_guid(outcomes)
    script = load_article(directory / f"{got['hostile-script'].slug}.md")
    assert script.url == "https://news.example.org/blog/council-budget-2027"
    assert script.image == "https://news.example.org/images/budget.png"
    assert script.image_alt == "Budget chart"
    tom = load_article(directory / f"{got['hostile-ampersand'].slug}.md")
    assert "[about us](https://news.example.org/about/)" in tom.body


def test_welsh_emoji_missing_summary_long_url_and_bad_date(
    hostile: tuple[Path, list[ImportOutcome]],
) -> None:
    directory, outcomes = hostile
    got = by_guid(outcomes)
    welsh_path = directory / f"{got['hostile-welsh'].slug}.md"
    welsh = load_article(welsh_path)
    assert welsh.slug == "newyddion-o-gymru-gwasanaethau-digidol"
    assert welsh.title == "Newyddion o Gymru: gwasanaethau digidol ☕"
    assert welsh.regions == ("wales",)  # category "Cymru" is a region alias
    assert "☕" in welsh_path.read_text("utf-8") and "🎉" in (welsh.summary or "")

    empty = got["hostile-no-summary"]
    assert empty.notes == ("no summary in the feed; left empty",)
    assert load_article(directory / f"{empty.slug}.md").summary is None

    long = load_article(directory / f"{got['hostile-long-url'].slug}.md")
    assert long.url == LONG_URL and len(long.url) == 200

    bad = got["hostile-bad-date"]
    assert bad.outcome == "imported"
    assert bad.notes == (
        "unparsable date 'next Tuesday-ish, after lunch'; used 2026-11-24T10:00:00+00:00 (the feed's date)",
    )
    assert load_article(directory / f"{bad.slug}.md").published == datetime(2026, 11, 24, 10, tzinfo=UTC)


def test_reimport_is_a_no_op(hostile: tuple[Path, list[ImportOutcome]]) -> None:
    directory, _ = hostile
    before = {p.name: p.read_bytes() for p in directory.glob("*.md")}
    again = import_feed(str(HOSTILE), directory)
    assert counts(again)["imported"] == 0 and counts(again)["updated"] == 0
    reasons = {o.guid: o.reason for o in again}
    assert reasons["hostile-script"] == "unchanged since the last import"
    assert reasons["hostile-bad-date"] == "unchanged since the last import"
    assert by_guid(again)["hostile-bad-date"].notes[0].endswith("kept the stored date 2026-11-24T10:00:00+00:00")
    assert {p.name: p.read_bytes() for p in directory.glob("*.md")} == before


def test_changed_item_is_updated_and_local_edits_kept(tmp_path: Path) -> None:
    directory = tmp_path / "articles"
    import_feed(str(HOSTILE), directory)
    welsh_path = directory / "newyddion-o-gymru-gwasanaethau-digidol.md"
    # an editor adds an author role by hand: the feed does not carry one, so it must survive
    welsh_path.write_text(
        welsh_path.read_text("utf-8").replace("regions:", "author_role: Wales editor\nregions:"), "utf-8"
    )
    changed = tmp_path / "changed.xml"
    changed.write_text(
        HOSTILE.read_text("utf-8").replace(
            "gwasanaethau digidol ☕</title>", "gwasanaethau digidol newydd ☕</title>"
        ),
        "utf-8",
    )
    outcomes = by_guid(import_feed(str(changed), directory))
    welsh = outcomes["hostile-welsh"]
    assert (welsh.outcome, welsh.reason) == ("updated", "changed: title")
    assert welsh.slug == "newyddion-o-gymru-gwasanaethau-digidol"  # same file, not a new one
    article = load_article(welsh_path)
    assert article.title == "Newyddion o Gymru: gwasanaethau digidol newydd ☕"
    assert article.author_role == "Wales editor"
    assert counts(list(outcomes.values())) == {"imported": 0, "updated": 1, "skipped": 7}


def test_rss_sample(tmp_path: Path) -> None:
    outcomes = import_feed(str(FEEDS / "rss.xml"), tmp_path)
    assert [(o.outcome, o.slug) for o in outcomes] == [
        ("imported", "open-data-portal-relaunched"),
        ("imported", "cyber-exercise-for-school-it-staff"),
        ("imported", "digital-inclusion-drop-in-sessions"),
    ]
    portal = load_article(tmp_path / "open-data-portal-relaunched.md")
    assert portal.author == "Priya Natarajan"
    assert portal.image == "https://blog.example.org/images/portal.jpg"
    assert portal.tags == ("open-data",) and portal.regions == ("north-west",)
    assert portal.body.endswith("- Hourly updates\n- New [API](https://blog.example.org/api)")
    cyber = load_article(tmp_path / "cyber-exercise-for-school-it-staff.md")
    assert cyber.published.isoformat() == "2026-11-10T14:15:00+01:00"  # the feed's own offset kept
    assert cyber.summary == "Forty schools took part in a tabletop ransomware exercise."


def test_atom_sample(tmp_path: Path) -> None:
    outcomes = import_feed(str(FEEDS / "atom.xml"), tmp_path)
    assert [o.outcome for o in outcomes] == ["imported", "imported"]
    shared = load_article(tmp_path / f"{outcomes[0].slug}.md")
    assert shared.title == "Shared platform & the new contract"  # type="html": tags out, decoded once
    assert shared.url == "https://atom.example.org/news/shared-platform-contract"  # xml:base
    assert shared.image == "https://atom.example.org/img/signing.jpg"
    assert shared.regions == ("scotland",) and shared.tags == ("shared-services",)
    assert "[one contract](https://atom.example.org/news/contract.pdf)" in shared.body
    plain = load_article(tmp_path / f"{outcomes[1].slug}.md")
    assert plain.title == "Why we write <b> in plain text titles"  # type="text" is literal text
    assert plain.published.isoformat() == "2026-11-13T16:45:00-05:00"


def test_duplicate_links_match_across_cosmetic_differences() -> None:
    assert canonical_link("HTTPS://Example.org:443/a/?utm_source=rss&x=1#top") == "https://example.org/a?x=1"
    assert canonical_link("https://example.org/a") == canonical_link("https://example.org/a/")
    assert canonical_link("https://example.org/a?x=1") != canonical_link("https://example.org/a?x=2")


def test_same_title_gets_a_distinct_slug(tmp_path: Path) -> None:
    feed = tmp_path / "twins.xml"
    items = "".join(
        f"<item><title>Same title</title><link>https://e.example.org/{n}</link><guid>g{n}</guid>"
        "<pubDate>Mon, 02 Nov 2026 09:00:00 +0000</pubDate></item>"
        for n in (1, 2)
    )
    feed.write_text(f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>', "utf-8")
    assert [o.slug for o in import_feed(str(feed), tmp_path / "a")] == ["same-title", "same-title-2"]
    assert slugify("☕☕") == ""
    assert slugify("Ŵyl Dewi: Café & Co") == "wyl-dewi-cafe-co"


def test_unreadable_feeds_raise_article_error(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="cannot read feed file"):
        import_feed(str(tmp_path / "missing.xml"), tmp_path / "a")
    not_feed = tmp_path / "notes.txt"
    not_feed.write_text("just some notes, not XML", "utf-8")
    with pytest.raises(ArticleError, match="not a readable RSS or Atom feed"):
        import_feed(str(not_feed), tmp_path / "a")
    with pytest.raises(ArticleError, match="only http"):
        import_feed("ftp://example.org/feed.xml", tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_invalid_existing_article_stops_the_import(tmp_path: Path) -> None:
    directory = tmp_path / "articles"
    directory.mkdir()
    (directory / "broken.md").write_text("---\ntitle: x\n---\n", "utf-8")
    with pytest.raises(ProblemsError, match="broken.md:2:1: error: missing field 'published'"):
        import_feed(str(HOSTILE), directory)
    assert [p.name for p in directory.iterdir()] == ["broken.md"]


class _FeedHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/feed.xml":
            body = HOSTILE.read_bytes().replace(b"<link>https://news.example.org/blog/</link>", b"")
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def feed_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_import_over_http_resolves_against_the_feed_url(feed_server: str, tmp_path: Path) -> None:
    outcomes = by_guid(import_feed(f"{feed_server}/feed.xml", tmp_path, timeout=5))
    script = load_article(tmp_path / f"{outcomes['hostile-script'].slug}.md")
    # the channel <link> was removed, so relative URLs resolve against the URL the feed came from
    assert script.url == f"{feed_server}/blog/council-budget-2027"
    with pytest.raises(ArticleError, match="could not fetch feed .*: HTTP 404"):
        import_feed(f"{feed_server}/missing.xml", tmp_path, timeout=5)


def test_unresponsive_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/feed.xml"
        with pytest.raises(ArticleError, match="could not fetch feed"):
            import_feed(url, tmp_path, timeout=0.3)


def test_cli_import_prints_each_item_and_reimport_is_a_no_op(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("articles", "import", str(HOSTILE))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["imported", "script-alert-owned-script-council-budget-2027", "new", "item"]
    assert any(line.startswith("skipped   -  link rejected: javascript:") for line in lines)
    assert any("note: unparsable date 'next Tuesday-ish, after lunch'" in line for line in lines)
    assert lines[-1] == "6 imported, 0 updated, 2 skipped"
    assert (project / "issues" / "articles" / "newyddion-o-gymru-gwasanaethau-digidol.md").is_file()

    again = cli("articles", "import", str(HOSTILE), "--json")
    assert again.exit_code == 0
    data = json.loads(again.stdout)
    assert [d["outcome"] for d in data] == ["skipped"] * 8
    assert data[0]["reason"] == "unchanged since the last import"


def test_cli_import_into_another_dir_and_failures_exit_2(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("articles", "import", str(FEEDS / "atom.xml"), "--dir", "imported")
    assert result.exit_code == 0 and result.stdout.splitlines()[-1] == "2 imported, 0 updated, 0 skipped"
    assert len(list((project / "imported").glob("*.md"))) == 2
    missing = cli("articles", "import", "nope.xml")
    assert missing.exit_code == 2
    assert "error: cannot read feed file nope.xml" in missing.stderr
    (project / "bad.xml").write_text("<html><body>not a feed</body></html>", "utf-8")
    bad = cli("articles", "import", "bad.xml")
    assert bad.exit_code == 2 and "not a readable RSS or Atom feed" in bad.stderr


def test_broken_xml_is_reported_with_its_line(tmp_path: Path) -> None:
    feed = tmp_path / "cut.xml"
    feed.write_text('<rss version="2.0"><channel>\n'
                    "<item><title>Kept</title><link>https://example.org/kept</link></item>\n"
                    "<item><title>Cut &nbsp; off</title><link>https://example.org/cut</link>", "utf-8")
    outcomes = import_feed(str(feed), tmp_path / "a")
    assert [o.outcome for o in outcomes] == ["imported", "imported"]
    assert outcomes.warnings == (f"{feed}: not well-formed XML at line 3, column 18: undefined entity; "
                                 "items after it may be missing or incomplete",)
    assert import_feed(str(FEEDS / "rss.xml"), tmp_path / "b").warnings == ()


def test_broken_xml_with_no_complete_item_fails(tmp_path: Path) -> None:
    truncated = tmp_path / "t.xml"
    truncated.write_text("<rss><channel><item><title>x</title>", "utf-8")
    with pytest.raises(ArticleError, match=r"t\.xml: not well-formed XML at line 1, column 37: no element "
                                           r"found; no complete item could be read \(no link"):
        import_feed(str(truncated), tmp_path / "a")
    empty = tmp_path / "e.xml"
    empty.write_text('<rss version="2.0"><channel><title>t</title>', "utf-8")
    with pytest.raises(ArticleError, match="no items could be read"):
        import_feed(str(empty), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_cli_prints_broken_xml_warning_and_fails_when_nothing_is_readable(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (project / "t.xml").write_text("<rss><channel><item><title>x</title>", "utf-8")
    failed = cli("articles", "import", "t.xml")
    assert failed.exit_code == 2 and "not well-formed XML at line 1" in failed.stderr
    (project / "cut.xml").write_text('<rss version="2.0"><channel><item><title>A</title>'
                                     "<link>https://example.org/a</link></item><item>", "utf-8")
    text = cli("articles", "import", "cut.xml", "--dir", "x")
    assert text.exit_code == 0 and "warning: cut.xml: not well-formed XML at line 1" in text.stderr
    data = json.loads(cli("articles", "import", "cut.xml", "--dir", "y", "--json").stdout)
    assert any("not well-formed XML at line 1" in note for note in data[0]["notes"])
