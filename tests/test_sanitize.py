"""The sanitiser: URL policy with reasons, allow-listed HTML, text decoded exactly once."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from newsletter.content.sanitize import (
    check_url,
    clean_html,
    escape_markdown,
    fragment_to_text,
    html_to_markdown,
    summarise,
)

BASE = "https://news.example.org/blog/"


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("javascript:alert(1)", "javascript"),
        ("JaVaScRiPt:alert(1)", "javascript"),
        ("  javascript:alert(1)", "javascript"),
        ("java\tscript:alert(1)", "javascript"),
        ("java\nscript:alert(1)", "javascript"),
        ("data:text/html;base64,PHNjcmlwdD4=", "data"),
        ("vbscript:msgbox(1)", "vbscript"),
        ("file:///etc/passwd", "file"),
        ("ftp://example.org/x", "ftp"),
    ],
)
def test_non_http_schemes_are_rejected_with_a_reason(url: str, scheme: str) -> None:
    check = check_url(url, BASE)
    assert check.url is None
    assert check.reason is not None
    assert check.reason.startswith(f"{scheme}: URLs are not allowed")


def test_http_https_and_mailto_links_pass() -> None:
    assert check_url("https://Example.ORG/a?b=1").url == "https://example.org/a?b=1"
    assert check_url("HTTP://example.org/").url == "http://example.org/"
    assert check_url("mailto:comms@example.org").url == "mailto:comms@example.org"


def test_images_must_be_http_or_https() -> None:
    assert check_url("mailto:a@example.org", image=True).url is None
    assert check_url("data:image/png;base64,AAAA", image=True).reason.startswith("data:")


def test_relative_urls_resolve_against_the_feed_link() -> None:
    assert check_url("/images/a.png", BASE).url == "https://news.example.org/images/a.png"
    assert check_url("post-1", BASE).url == "https://news.example.org/blog/post-1"
    assert check_url("../about/", BASE).url == "https://news.example.org/about/"
    assert check_url("//cdn.example.org/x.js", BASE).url == "https://cdn.example.org/x.js"
    assert check_url("a b.html", BASE).url == "https://news.example.org/blog/a%20b.html"


def test_relative_url_without_a_base_is_rejected() -> None:
    check = check_url("/images/a.png")
    assert check.url is None and "relative URL" in (check.reason or "")
    assert check_url("https:///nohost").url is None


def test_clean_html_keeps_the_allow_list_only() -> None:
    dirty = (
        '<p onclick="steal()" style="color:red">Hello <script>alert("x")</script>'
        '<iframe src="https://evil.example"></iframe><b>bold</b> <u>underlined</u>'
        '<a href="javascript:alert(1)">js</a> <a href="/rel">rel</a>'
        '<img src="pic.png" alt="A pic" onerror="alert(1)"><img src="data:image/png;base64,AA"></p>'
        "<style>p { color: red }</style>"
    )
    result = clean_html(dirty, BASE)
    html = result.html
    for banned in ("<script", "alert", "onclick", "onerror", "style", "<iframe", "javascript:", "data:", "<u>"):
        assert banned not in html
    assert "<b>bold</b>" in html and "underlined" in html
    assert 'href="https://news.example.org/rel"' in html
    assert 'src="https://news.example.org/blog/pic.png"' in html
    assert result.images == (("https://news.example.org/blog/pic.png", "A pic"),)
    assert len(result.rejected) == 2
    assert result.rejected[0].startswith("link removed: javascript: URLs are not allowed")
    assert result.rejected[1].startswith("image removed: data: URLs are not allowed")


@pytest.mark.parametrize(
    "fragment, text",
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("Tom &amp;amp; Jerry", "Tom &amp; Jerry"),  # decoded once, not twice
        ("<p>One</p><p>Two<br>Three</p>", "One Two Three"),
        ("Fish <script>alert(1)</script>&amp; chips", "Fish & chips"),
        ("&lt;b&gt; is a tag", "<b> is a tag"),
        ("caf&eacute; &#9749;", "café ☕"),
        ("", ""),
    ],
)
def test_html_to_text_decodes_entities_exactly_once(fragment: str, text: str) -> None:
    assert fragment_to_text(fragment) == text


def test_escaped_markdown_renders_as_literal_text() -> None:
    text = '<script>alert(1)</script> *not bold* [not](a link) &amp; # no heading'
    rendered = MarkdownIt("commonmark").render(escape_markdown(text, line_start=True))
    assert rendered == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt; *not bold* [not](a link) &amp;amp; # no heading</p>\n"
    )
    assert MarkdownIt("commonmark").render(escape_markdown("- not a list", line_start=True)) == (
        "<p>- not a list</p>\n"
    )


def test_html_to_markdown_keeps_structure_and_only_absolute_urls() -> None:
    markdown, rejected = html_to_markdown(
        '<h2>Plan</h2><p>Read <a href="notes.html">the notes</a> and <strong>act</strong>.</p>'
        '<ul><li>one</li><li>two &amp; three</li></ul><ol><li>first</li></ol>'
        '<p><a href="javascript:void(0)">bad</a></p><blockquote>quoted</blockquote>',
        BASE,
    )
    assert markdown == (
        "## Plan\n\nRead [the notes](https://news.example.org/blog/notes.html) and **act**.\n\n"
        "- one\n- two & three\n\n1. first\n\nbad\n\n> quoted"
    )
    assert rejected and "javascript" in rejected[0]
    html = MarkdownIt("commonmark", {"html": True}).render(markdown)
    assert "javascript" not in html and "<script" not in html


def test_summarise_keeps_short_text_and_cuts_long_text_at_a_word() -> None:
    assert summarise("  One sentence.  ") == "One sentence."
    long = "First sentence here. Second one follows. " + "word " * 100
    assert summarise(long, 60) == "First sentence here. Second one follows."
    cut = summarise("word " * 100, 50)
    assert len(cut) <= 50 and cut.endswith("…") and " wor…" not in cut
    unbreakable = "https://example.org/" + "a" * 300
    assert len(summarise(unbreakable, 100)) == 100
