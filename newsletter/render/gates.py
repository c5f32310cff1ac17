"""Quality gates run on every rendered HTML email (by `build` and `check`).

FAIL: over 102,000 bytes (Gmail clips the message); an <img> without alt or without a pixel width
attribute; a link or source that is not absolute https/http, mailto, tel, #anchor or a placeholder
token such as -unsubscribe_url-; <script>, on* event handlers or javascript: URLs; missing
<html lang>, <meta charset>, <meta name=viewport> or <title>.
WARN: over 90,000 bytes; plain http:// links; <img width> given as a percentage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

MAX_BYTES = 102_000
WARN_BYTES = 90_000
URL_ATTRS = {"href", "src", "background", "action", "poster"}
TOKEN_RE = re.compile(r"^-[a-z][a-z0-9_]*-$|^\{\{.*\}\}$|^\*\|.*\|\*$|^%%.*%%$|^\[[a-z_]+\]$", re.I)
PIXEL_RE = re.compile(r"^\d+(px)?$")
CSS_URL_RE = re.compile(r"url\(\s*['\"]?([^'\")]*)", re.I)
_PARSER = etree.HTMLParser()


@dataclass(frozen=True)
class GateReport:
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """PASS, WARN n or FAIL n (for tables)."""
        if self.failed:
            return f"FAIL {len(self.failed)}"
        if self.warnings:
            return f"WARN {len(self.warnings)}"
        return "PASS"

    def as_dict(self) -> dict[str, list[str]]:
        return {"failed": list(self.failed), "warnings": list(self.warnings)}


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def url_problem(url: str) -> tuple[str, str] | None:
    """(severity, reason) for an unacceptable URL, or None when it is fine."""
    value = url.strip()
    lowered = value.lower()
    if not value:
        return "fail", "empty URL"
    if TOKEN_RE.match(value) or lowered.startswith(("mailto:", "tel:", "#", "cid:")):
        return None
    if re.match(r"^\s*javascript:", lowered):
        return "fail", f"javascript: URL {_short(value)!r}"
    if lowered.startswith("https://") and len(value) > 8:
        return None
    if lowered.startswith("http://") and len(value) > 7:
        return "warn", f"insecure http:// URL {_short(value)!r}"
    return "fail", f"URL is not absolute https or mailto: {_short(value)!r}"


class _Scanner:
    """Collects the gates' findings from lxml's parse tree (the HTML parser premailer and the text
    part use too; a third as long as feeding html.parser the same document)."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.warnings: list[str] = []
        self.lang = False
        self.charset = False
        self.viewport = False
        self.title = False

    def scan(self, root: etree._Element) -> None:
        for element in root.iter():
            if isinstance(element.tag, str):  # not a comment or processing instruction
                self._element(element.tag.lower(), element)

    def _url(self, tag: str, attr: str, url: str) -> None:
        problem = url_problem(url)
        if problem:
            severity, reason = problem
            (self.failed if severity == "fail" else self.warnings).append(f"<{tag} {attr}>: {reason}")

    def _element(self, tag: str, element: etree._Element) -> None:
        values = element.attrib
        for name, value in values.items():
            if name.startswith("on"):
                self.failed.append(f"<{tag}> has an event handler attribute {name!r}")
            elif name in URL_ATTRS:
                self._url(tag, name, value)
            elif name == "style" and value:
                for url in CSS_URL_RE.findall(value):
                    self._url(tag, "style url()", url)
        if tag == "script":
            self.failed.append("<script> element (mail clients do not run scripts)")
        elif tag == "link" and "stylesheet" in (values.get("rel") or "").lower():
            self.failed.append("<link rel=stylesheet> (external CSS: mail clients block it)")
        elif tag == "html":
            self.lang = bool((values.get("lang") or "").strip())
        elif tag == "meta":
            if values.get("charset") or "charset=" in (values.get("content") or "").lower():
                self.charset = True
            if (values.get("name") or "").lower() == "viewport":
                self.viewport = "width=device-width" in (values.get("content") or "").replace(" ", "")
        elif tag == "title":
            self.title = self.title or bool("".join(element.itertext()).strip())
        elif tag == "img":
            self._img(values)

    def _img(self, values: etree._Attrib) -> None:
        src = _short(values.get("src") or "?")
        if values.get("alt") is None:
            self.failed.append(f"<img src={src!r}> has no alt attribute (use alt=\"\" if decorative)")
        width = (values.get("width") or "").strip()
        if not width:
            self.failed.append(f"<img src={src!r}> has no width attribute (Outlook needs pixels)")
        elif not PIXEL_RE.match(width):
            self.warnings.append(f"<img src={src!r}> width={width!r} is not a pixel width")


def check_html(html: str) -> GateReport:
    """Run every gate on one rendered HTML document."""
    size = len(html.encode("utf-8"))
    failed: list[str] = []
    warnings: list[str] = []
    if size > MAX_BYTES:
        failed.append(f"size {size:,} bytes is over {MAX_BYTES:,} (Gmail clips the message)")
    elif size > WARN_BYTES:
        warnings.append(f"size {size:,} bytes is over {WARN_BYTES:,}; leave headroom for tracking")
    scanner = _Scanner()
    root = etree.fromstring(html, _PARSER) if html.strip() else None
    if root is not None:
        scanner.scan(root)
    failed.extend(scanner.failed)
    warnings.extend(scanner.warnings)
    if not scanner.lang:
        failed.append("<html> has no lang attribute")
    if not scanner.charset:
        failed.append("no <meta charset>")
    if not scanner.viewport:
        failed.append("no <meta name=viewport content=width=device-width>")
    if not scanner.title:
        failed.append("no <title>")
    return GateReport(failed, warnings)
