"""Acceptance: a hostile feed imported and built into an edition gives a safe, well-formed email.

Imports tests/data/feeds/hostile.xml (script and `&` in titles, relative links, emoji and Welsh,
no summary, a 200-character URL, a bad date, a javascript: link, a duplicate link under a new guid)
into a copy of the sample project, builds an edition from those articles, and checks the output:
no script, no javascript:, no relative URL, and (with ../shared/tools/email-check) no FAIL,
including no horizontal overflow at 375 px.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.content.feeds import import_feed
from newsletter.render.build import build_edition

pytestmark = pytest.mark.slow

HOSTILE = Path(__file__).parent / "data" / "feeds" / "hostile.xml"
EMAIL_CHECK = Path(__file__).resolve().parents[1].parent / "shared/tools/email-check"

MANIFEST = """\
edition: "2026-12-hostile"
title: "Hostile <feed> & friends"
subject: "Tom & Jerry <script>alert(1)</script> digest"
preheader: "Newyddion o Gymru ☕ & more"
template: digest
timezone: Europe/London
intro: |
  Everything below came from a **hostile** feed: <script>alert("intro")</script> & friends.
featured: script-alert-owned-script-council-budget-2027
articles:
  slugs:
    - tom-jerry-cat-mouse-digital-services
    - newyddion-o-gymru-gwasanaethau-digidol
    - an-item-with-no-summary-at-all
    - the-item-whose-link-never-breaks
    - an-item-with-a-date-nobody-can-read
segments:
  wales: {}
  london: {}
"""


@pytest.fixture
def built(project: Path) -> tuple[Path, list[Path]]:
    outcomes = import_feed(str(HOSTILE), project / "issues" / "articles")
    assert [o.outcome for o in outcomes].count("imported") == 6
    manifest = project / "issues" / "2026-12-hostile.yaml"
    manifest.write_text(MANIFEST, "utf-8")
    result = build_edition(manifest, load_settings(project), project / "build" / "hostile")
    assert [v.segment for v in result.variants] == ["wales", "london"]
    return result.out_dir, sorted(result.out_dir.glob("*.html"))


def test_built_hostile_edition_has_no_script_and_only_absolute_urls(built: tuple[Path, list[Path]]) -> None:
    out_dir, pages = built
    assert len(pages) == 2
    for page in pages:
        html = page.read_text("utf-8")
        lowered = html.lower()
        assert "<script" not in lowered
        assert "javascript:" not in lowered
        assert not re.search(r"\son[a-z]+\s*=", lowered)
        for attr, url in re.findall(r'\s(href|src)\s*=\s*["\']([^"\']*)["\']', html, re.I):
            assert re.match(r"^(https://|http://|mailto:|-\w+-$)", url), (page.name, attr, url)
        # hostile titles are there, as escaped text
        assert re.search(r"&lt;script&gt;alert\((\"|&#34;|&quot;)owned\1\)&lt;/script&gt; Council budget 2027", html)
        assert "Tom &amp; Jerry" in html and "&amp;amp;" not in html
        assert "Newyddion o Gymru: gwasanaethau digidol ☕" in html
        assert "https://news.example.org/blog/" + "a" * 170 in html
        assert "https://news.example.org/images/budget.png" in html
        text = page.with_suffix(".txt").read_text("utf-8")
        assert "Tom & Jerry" in text and "&amp;" not in text


@pytest.mark.skipif(not EMAIL_CHECK.is_file(), reason=f"email-check not found at {EMAIL_CHECK}")
def test_built_hostile_edition_passes_email_check(built: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out_dir, _ = built
    eml = out_dir / "wales.eml"
    proc = subprocess.run(
        [sys.executable, str(EMAIL_CHECK), str(eml), "--no-lint", "--out", str(tmp_path / "shots")],
        capture_output=True, text=True, timeout=600,
    )
    output = proc.stdout + proc.stderr
    fails = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert fails == [] and proc.returncode == 0, output
    assert re.search(r"^PASS overflow-375\b", output, re.M), output
