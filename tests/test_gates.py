"""Quality gates on rendered HTML."""

from __future__ import annotations

import pytest

from newsletter.render.gates import GateReport, check_html


def page(body: str, *, head: str | None = None, lang: str = ' lang="en-GB"') -> str:
    head = head if head is not None else (
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Digest</title>"
    )
    return f"<!doctype html><html{lang}><head>{head}</head><body>{body}</body></html>"


CLEAN = (
    '<img src="https://www.example.org/a.png" alt="A chart" width="552">'
    '<a href="https://www.example.org/">site</a> <a href="mailto:comms@example.org">mail</a>'
    '<a href="-unsubscribe_url-">Unsubscribe</a> <a href="-preferences_url-">Preferences</a>'
)


def test_clean_email_passes() -> None:
    report = check_html(page(CLEAN))
    assert report == GateReport([], []) and report.summary() == "PASS"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<img src="https://e.org/a.png" width="10">', "no alt attribute"),
        ('<img src="https://e.org/a.png" alt="x">', "no width attribute"),
        ('<a href="/relative/page">x</a>', "not absolute https or mailto: '/relative/page'"),
        ('<a href="//cdn.example.org/x">x</a>', "not absolute"),
        ('<img src="file:///etc/passwd" alt="" width="1">', "not absolute"),
        ('<a href="">x</a>', "empty URL"),
        ('<a href="javascript:alert(1)">x</a>', "javascript: URL"),
        ("<script>alert(1)</script>", "<script> element"),
        ('<div onclick="x()">x</div>', "event handler attribute 'onclick'"),
        ('<div style="background:url(/bg.png)">x</div>', "not absolute"),
        ('<link rel="stylesheet" href="https://fonts.example/css">', "external CSS"),
    ],
)
def test_planted_problems_fail(body: str, expected: str) -> None:
    report = check_html(page(CLEAN + body))
    assert not report.ok and report.summary().startswith("FAIL")
    assert any(expected in item for item in report.failed), report.failed


def test_head_requirements() -> None:
    report = check_html(page("<p>x</p>", head="", lang=""))
    assert report.failed == [
        "<html> has no lang attribute", "no <meta charset>",
        "no <meta name=viewport content=width=device-width>", "no <title>",
    ]
    legacy = '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
    head = legacy + '<meta name="viewport" content="width=device-width"><title>T</title>'
    assert check_html(page("<p>x</p>", head=head)).ok


def test_size_limits() -> None:
    filler = "<p>" + "x" * 95_000 + "</p>"
    warned = check_html(page(filler))
    assert warned.ok and warned.summary() == "WARN 1" and "over 90,000" in warned.warnings[0]
    failed = check_html(page(filler + "<p>" + "y" * 8_000 + "</p>"))
    assert any("over 102,000" in item for item in failed.failed)


def test_percentage_width_and_plain_http_warn() -> None:
    report = check_html(page('<img src="https://e.org/a.png" alt="" width="100%">'
                             '<a href="http://insecure.example.org/">x</a>'))
    assert report.ok and len(report.warnings) == 2


def test_problems_are_found_in_badly_formed_markup_and_any_case() -> None:
    report = check_html(page(CLEAN + '<p><a HREF="JavaScript:x()">x<div ONCLICK="y()"><IMG SRC="https://e.org/b.png">'))
    assert "<a href>: javascript: URL 'JavaScript:x()'" in report.failed
    assert "<div> has an event handler attribute 'onclick'" in report.failed
    assert any("no alt attribute" in item for item in report.failed)
    assert check_html("").failed[0] == "<html> has no lang attribute"
