"""The digest template and the render pipeline (Jinja → MJML → premailer → text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from buildproject import make_build_project

from newsletter.config import load_settings
from newsletter.content.manifest import Edition, load_manifest
from newsletter.errors import InputError
from newsletter.render.pipeline import load_template, markdown_to_html, render_variant
from newsletter.render.plaintext import html_to_text


@pytest.fixture
def edition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Edition:
    root = make_build_project(tmp_path / "p", monkeypatch)
    return load_manifest(root / "issues" / "edition.yaml", load_settings(root))


def render(edition: Edition, segment: str):  # type: ignore[no-untyped-def]
    settings = load_settings(edition.manifest_path.parent.parent)
    template = load_template(settings, edition.template)
    spec = next(v for v in edition.variants if v.segment == segment)
    return render_variant(template, edition, spec, settings)


def test_hostile_title_and_summary_are_escaped_text(edition: Edition) -> None:
    out = render(edition, "wales")
    assert "&lt;script&gt;alert('x')&lt;/script&gt; Rates &amp; charges" in out.html
    assert "<script" not in out.html.lower()
    assert "onerror" not in re.sub(r"&lt;img[^<]*&gt;", "", out.html)  # only as escaped text
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in out.html
    # the text part shows the words but nothing a client could take for a tag
    assert "alert('x')" in out.text and "<script" not in out.text and "<b>" not in out.text


def test_per_recipient_values_are_tokens_only(edition: Edition) -> None:
    out = render(edition, "scotland")
    # the HTML part takes HTML-escaped values, the text part raw ones
    for token in ("-first_name_html-", "-email_html-", "-unsubscribe_url-", "-preferences_url-"):
        assert token in out.html
    for token in ("-first_name-", "-email-", "-unsubscribe_url-", "-preferences_url-"):
        assert token in out.text
    assert "-first_name-" not in out.html and "_html-" not in out.text
    assert 'href="-unsubscribe_url-"' in out.html and 'href="-preferences_url-"' in out.html
    assert "Alex" not in out.html


def test_hostile_member_names_cannot_inject_markup(edition: Edition) -> None:
    """What SendGrid does (plain replacement of each token) gives safe HTML and exact text."""
    from newsletter.render.placeholders import substitution_values

    out = render(edition, "scotland")
    values = substitution_values(first_name='<img src=x onerror="alert(1)">&amp;', email="o'neil&co@example.org",
                                 unsubscribe_url="https://e.org/u/t", preferences_url="https://e.org/p/t")
    html, text = out.html, out.text
    for token, value in values.items():
        html, text = html.replace(token, value), text.replace(token, value)
    assert '<img src=x onerror="alert(1)">' not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;" in html
    assert "o&#x27;neil&amp;co@example.org" in html
    assert '<img src=x onerror="alert(1)">&amp;' in text and "o'neil&co@example.org" in text


def test_html_structure_email_clients_need(edition: Edition) -> None:
    html = render(edition, "scotland").html
    assert html.startswith("<!doctype html>")
    assert re.search(r'<html[^>]* lang="en-GB"', html)
    assert '<meta name="color-scheme" content="light dark"' in html
    assert "@media (prefers-color-scheme: dark)" in html and "!important" in html
    assert "<link" not in html and "@import" not in html and "fonts.googleapis" not in html
    # MJML's pixel width survives premailer (the default rewrites it to 100%)
    assert re.search(r'<img [^>]*width="552"', html)
    for table in re.findall(r"<table\b[^>]*>", html):
        assert 'role="presentation"' in table
    for img in re.findall(r"<img\b[^>]*>", html):
        assert re.search(r'\balt="[^"]+"', img)
    # styles from <style> are inlined for clients that drop <style> (Gmail app, Outlook)
    assert re.search(r'<h3 class="nl-title" style="[^"]*font-size:19px', html)


def test_content_blocks(edition: Edition) -> None:
    html = render(edition, "scotland").html
    assert "Local Public Services IT Society" in html  # organisation name (settings)
    assert "1 Example Street, Northampton" in html  # postal address
    assert "News from Scotland" in html
    assert "Scottish councils share a cloud platform" in html
    # the featured image links to the article, so its alt names the article, not the photo
    assert re.search(r'<a href="https://[^"]+"[^>]*><img [^>]*alt="Leading well when the money is tight"', html)
    assert "A team around a whiteboard sketching a service map" not in html
    assert "Tom Reid, Data Protection Officer" in html  # author and role
    # "Continue reading" names its article for screen readers
    assert re.search(r"Continue reading<span[^>]*>: Five steps on your GDPR roadmap</span>", html)
    assert "A short preheader" in html


def test_segment_without_region_has_no_regional_block(edition: Edition) -> None:
    html = render(edition, "members").html
    assert "News from" not in html and "Scottish councils share a cloud platform" in html


def test_intro_markdown_is_safe() -> None:
    html = str(markdown_to_html(
        "**Bold** <script>x</script> [ok](https://a.example/) [js](javascript:alert(1)) [rel](/x)"
    ))
    assert "<strong>Bold</strong>" in html and "&lt;script&gt;" in html
    assert '<a href="https://a.example/">ok</a>' in html
    assert "javascript:" not in html.replace("(javascript:alert(1))", "")
    assert 'href="/x"' not in html


def test_same_inputs_render_identical_bytes(edition: Edition) -> None:
    first, second = render(edition, "wales"), render(edition, "wales")
    assert first.html == second.html and first.text == second.text


def test_text_part_keeps_links_and_wraps(edition: Edition) -> None:
    text = render(edition, "scotland").text
    flat = " ".join(text.split())
    # the title, then the URL once, at "Continue reading"
    assert "Continue reading: Five steps on your GDPR roadmap <https://www.example.org/blog/gdpr-steps>" in flat
    assert flat.count("<https://www.example.org/blog/gdpr-steps>") == 1
    for line in text.splitlines():
        assert len(line) <= 78 or "://" in line or "-unsubscribe_url-" in line or "-email-" in line, line
    assert not re.search(r"&(?:nbsp|amp|lt|gt|quot|#\d+);", text)
    assert "A short preheader" not in text  # hidden preheader is not body text


def test_html_to_text_rules() -> None:
    html = (
        '<div style="display:none">hidden</div><h2>Heading</h2><p>Tom &amp; Jerry &nbsp;'
        '<a href="https://x.example/a">Read</a> <a href="https://x.example/b">https://x.example/b</a>'
        '</p><ul><li>One</li><li>Two</li></ul><p>' + "word " * 30 + "https://x.example/" + "y" * 90
        + "</p>"
    )
    text = html_to_text(html)
    assert "hidden" not in text
    assert "Heading\n=======" in text
    assert "Tom & Jerry Read <https://x.example/a> https://x.example/b\n" in text
    assert "- One\n\n- Two" in text
    assert "https://x.example/" + "y" * 90 in text  # never broken
    assert all(len(line) <= 78 for line in text.splitlines() if "://" not in line)


def test_missing_template_names_the_path(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    with pytest.raises(InputError) as info:
        load_template(settings, "nope")
    assert str(tmp_path / "templates" / "nope" / "email.mjml.j2") in info.value.message


def test_user_template_with_text_part(tmp_path: Path, edition: Edition) -> None:
    root = edition.manifest_path.parent.parent
    custom = root / "templates" / "plain"
    custom.mkdir()
    (custom / "email.mjml.j2").write_text(
        '<mjml lang="en-GB"><mj-head><mj-title>{{ variant.subject }}</mj-title></mj-head><mj-body>'
        "<mj-section><mj-column><mj-text>{{ edition.title }} for {{ tokens.first_name }}</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>", "utf-8")
    (custom / "text.j2").write_text("{{ edition.title }} & more for {{ tokens.first_name }}\n", "utf-8")
    settings = load_settings(root)
    template = load_template(settings, "plain")
    out = render_variant(template, edition, edition.variants[0], settings)
    assert "Test edition for -first_name_html-" in out.html
    assert out.text == "Test edition & more for -first_name-\n"  # text templates: raw values, no escaping


def test_a_listed_article_shows_its_image_as_a_linked_thumbnail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_build_project(tmp_path / "p", monkeypatch)
    article = root / "issues" / "articles" / "scottish-cloud.md"
    article.write_text(article.read_text("utf-8").replace(
        "tags: [cloud]", "tags: [cloud]\nimage: https://www.example.org/img/cloud.jpg\nimage_alt: Server racks"), "utf-8")
    edition = load_manifest(root / "issues" / "edition.yaml", load_settings(root))
    html = render(edition, "wales").html
    thumb = re.search(r'<a href="https://www.example.org/blog/scottish-cloud"[^>]*>\s*<img [^>]*'
                      r'src="https://www.example.org/img/cloud.jpg"[^>]*>', html)
    assert thumb, "the listed article's image is missing"
    # the image is a link to the article, so its alt names the article; a pixel width for Outlook
    assert 'alt="Scottish councils share a cloud platform"' in thumb.group(0)
    assert re.search(r'width="144"', thumb.group(0))
