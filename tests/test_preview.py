"""The preview page: every variant at 600 and 375 px in sandboxed iframes, inbox line, text part,
everything escaped, addressed to the sample member exactly as the .eml is; served only on localhost.

Each test builds its own edition (tests/data/build, with a hostile article), so the page is always
made from what the current pipeline writes."""

from __future__ import annotations

import email
import re
import shutil
import urllib.error
import urllib.request
from email import policy
from html.parser import HTMLParser
from pathlib import Path

import pytest
from buildproject import make_build_project

from newsletter.config import load_settings
from newsletter.errors import InputError
from newsletter.render import HTML_TOKENS, TEXT_TOKENS, BuildGateFailed, build_edition
from newsletter.render.preview import serve_preview, write_preview

DATA = Path(__file__).parent / "data"
# any per-recipient token left unfilled, old or new spelling (-first_name-, -email_html- ...)
TOKEN = re.compile(r"-(?:" + "|".join(t.strip("-") for t in {*TEXT_TOKENS.values(), *HTML_TOKENS.values()})
                   + r"|first_name\w*|email\w*)-")


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Collector:
    collector = Collector()
    collector.feed(page)
    return collector


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_build_project(tmp_path / "p", monkeypatch)
    manifest = root / "issues" / "edition.yaml"
    manifest.write_text(manifest.read_text("utf-8").replace(
        'subject: "Test digest"', 'subject: "News from <script>alert(1)</script> & more"').replace(
        'preheader: "A short preheader"', 'preheader: "Fish & chips \\"quoted\\""'), "utf-8")
    return root


@pytest.fixture
def built(root: Path) -> Path:
    return build_edition(root / "issues" / "edition.yaml", load_settings(root)).out_dir


@pytest.fixture
def page(built: Path, tmp_path: Path) -> str:
    out = write_preview(built, tmp_path / "out" / "preview.html")
    assert out == tmp_path / "out" / "preview.html"
    return out.read_text("utf-8")


def test_every_variant_in_two_sandboxed_iframes_with_the_sample_member(page: str, built: Path) -> None:
    doc = parse(page)
    frames = [attrs for tag, attrs in doc.tags if tag == "iframe"]
    assert [f["width"] for f in frames] == ["600", "375"] * 3
    for frame in frames:
        assert frame["sandbox"] is not None and "allow-scripts" not in frame["sandbox"]
        assert "allow-same-origin" not in frame["sandbox"]
    assert [attrs["id"] for tag, attrs in doc.tags if tag == "section"] == ["scotland", "wales", "members"]
    for frame in frames:
        srcdoc = frame["srcdoc"] or ""
        assert "Hello Alex," in srcdoc and 'href="https://www.example.org/newsletter/u/sample-token"' in srcdoc
        assert "alex@example.org" in srcdoc
    # the page shows each email exactly as its .eml has it: one set of sample values
    eml = email.message_from_bytes((built / "wales.eml").read_bytes(), policy=policy.default)
    html_part = eml.get_body(("html",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert html_part.split("<head>", 1)[1] in (frames[2]["srcdoc"] or "")


def test_no_placeholder_token_is_left_anywhere(page: str) -> None:
    assert not TOKEN.findall(page)
    for frame in (a for t, a in parse(page).tags if t == "iframe"):
        assert not TOKEN.findall(frame["srcdoc"] or "")


def test_inbox_line_gates_and_text_part_are_shown_escaped(page: str) -> None:
    doc = parse(page)
    assert not [t for t, _ in doc.tags if t == "script"]  # hostile subject and titles stay text
    text = "".join(doc.text)
    assert "News from <script>alert(1)</script> & more" in text
    assert 'Fish & chips "quoted"' in text
    assert "LPS IT Society Digest <digest@example.org>" in text
    assert "Hello Alex," in text  # the text part, personalised with the sample values
    assert "alert('x')" in text  # the hostile article title in the text part, shown as text
    assert "gates: all passed" in text
    assert "600 px" in text and "375 px" in text
    assert "&lt;script&gt;alert(1)" in page


def test_a_build_that_failed_a_gate_is_shown_with_its_failures(root: Path, tmp_path: Path) -> None:
    macros = root / "templates" / "digest" / "_macros.mjml.j2"
    macros.write_text(macros.read_text("utf-8").replace('href="{{ article.url }}"', 'href="/read/{{ article.slug }}"'),
                      "utf-8")
    with pytest.raises(BuildGateFailed) as failed:
        build_edition(root / "issues" / "edition.yaml", load_settings(root))
    page = write_preview(failed.value.result.out_dir, tmp_path / "p.html").read_text("utf-8")
    assert "FAIL: &lt;a href&gt;: URL is not absolute https or mailto: &#x27;/read/gdpr-steps&#x27;" in page


def test_page_has_no_script_and_a_restrictive_policy(page: str) -> None:
    doc = parse(page)
    metas = [a for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert metas and "default-src 'none'" in (metas[0]["content"] or "")
    assert "script-src" not in (metas[0]["content"] or "")  # falls back to 'none'


def test_missing_build_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        write_preview(tmp_path, tmp_path / "preview.html")
    assert "build.json" in caught.value.message


def test_serve_preview_serves_only_the_page_on_localhost(built: Path, tmp_path: Path) -> None:
    out = write_preview(built, tmp_path / "preview.html")
    (tmp_path / "secret.txt").write_text("not for the web")
    url, server = serve_preview(out)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/preview.html")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.read() == out.read_bytes()
        base = url.rsplit("/", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + "/secret.txt", timeout=10)
        assert caught.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_preview_of_the_sample_edition_has_no_placeholder_left(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """`newsletter preview issues/2026-12.yaml --out p.html`: every greeting and link filled in."""
    result = cli("preview", "issues/2026-12.yaml", "--out", "p.html")
    assert result.exit_code == 0, result.stderr
    page = (project / "p.html").read_text("utf-8")
    assert not TOKEN.findall(page) and "-first_name" not in page and "-email" not in page
    assert page.count(" Alex,") == 12 * 3  # each variant's greeting: two frames and the text part
    assert len([t for t, _ in parse(page).tags if t == "iframe"]) == 24


def test_preview_command_builds_and_writes_the_page(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(DATA / "manifests", project / "planted")
    result = cli("preview", "planted/clean.yaml", "--out", "out/preview.html")
    assert result.exit_code == 0, result
    page = (project / "out" / "preview.html").read_text("utf-8")
    doc = parse(page)
    assert [a["id"] for t, a in doc.tags if t == "section"] == ["scotland", "london", "north-east"]
    assert len([t for t, _ in doc.tags if t == "iframe"]) == 6
    assert "Your December digest, Scotland" in "".join(doc.text)


def test_preview_command_reports_manifest_problems(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(DATA / "manifests", project / "planted")
    result = cli("preview", "planted/three-mistakes.yaml")
    assert result.exit_code == 2
    assert "gdpr-roadmp" in result.stderr
    assert not (project / "preview.html").exists()
