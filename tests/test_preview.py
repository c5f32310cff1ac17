"""The preview page: every variant at 600 and 375 px in sandboxed iframes, inbox line, text part,
everything escaped; served only on localhost."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.errors import InputError
from newsletter.render.preview import serve_preview, write_preview

DATA = Path(__file__).parent / "data"
BUILD = DATA / "preview-build"


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
def page(tmp_path: Path) -> str:
    out = write_preview(BUILD, tmp_path / "out" / "preview.html")
    assert out == tmp_path / "out" / "preview.html"
    return out.read_text("utf-8")


def test_every_variant_in_two_sandboxed_iframes(page: str) -> None:
    doc = parse(page)
    frames = [attrs for tag, attrs in doc.tags if tag == "iframe"]
    assert [f["width"] for f in frames] == ["600", "375", "600", "375"]
    for frame in frames:
        assert frame["sandbox"] is not None and "allow-scripts" not in frame["sandbox"]
        assert "allow-same-origin" not in frame["sandbox"]
    sections = [attrs["id"] for tag, attrs in doc.tags if tag == "section"]
    assert sections == ["scotland", "london"]
    # the email itself, with sample recipient values in place of the placeholder tokens
    assert "Hello Alex, \"quotes\" &amp; <b>bold</b>" in frames[0]["srcdoc"]  # type: ignore[operator]
    assert "-unsubscribe_url-" not in frames[0]["srcdoc"]  # type: ignore[operator]
    assert "alex.member@example.org" in frames[2]["srcdoc"]  # type: ignore[operator]


def test_inbox_line_gates_and_text_part_are_shown_escaped(page: str) -> None:
    doc = parse(page)
    assert not [t for t, _ in doc.tags if t == "script"]  # hostile subject and text stay text
    text = "".join(doc.text)
    assert "News from <script>alert(1)</script> Scotland" in text
    assert "Fish & chips \"quoted\"" in text
    assert "LPS IT Society Digest <digest@example.org>" in text
    assert '<script>alert("text part")</script> & more' in text
    assert "Hello Alex," in text  # the text part, personalised with sample values
    assert "warning: image <b>big</b>" in text
    assert "FAIL: over 102000 bytes" in text
    assert "600 px" in text and "375 px" in text
    assert "&lt;script&gt;alert(1)" in page


def test_page_has_no_script_and_a_restrictive_policy(page: str) -> None:
    doc = parse(page)
    metas = [a for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert metas and "default-src 'none'" in (metas[0]["content"] or "")
    assert "script-src" not in (metas[0]["content"] or "")  # falls back to 'none'


def test_missing_build_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        write_preview(tmp_path, tmp_path / "preview.html")
    assert "build.json" in caught.value.message


def test_serve_preview_serves_only_the_page_on_localhost(tmp_path: Path) -> None:
    out = write_preview(BUILD, tmp_path / "preview.html")
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
