"""Turning untrusted feed HTML into safe article content.

Policy (an allow-list, enforced with nh3):
- Tags kept: p, br, hr, a, strong, b, em, i, code, pre, blockquote, ul, ol, li, h2, h3, h4, img.
  `script`, `style`, `iframe`, `object`, `template` and `noscript` are removed *with* their content;
  any other tag is removed but its text kept. Event handlers, `style` and every other attribute go.
- URLs (`a href`, `img src`): only `http:` and `https:` (and `mailto:` for links). `javascript:`,
  `data:`, `vbscript:`, `file:` and every other scheme are rejected, and the reason is reported.
  Relative URLs are resolved against the feed's link; without one they are rejected.
- Text is decoded exactly once: titles and summaries are stored as plain text (no tags, no entities),
  so `Tom &amp; Jerry` in a feed becomes `Tom & Jerry`, and is escaped once, wherever it is shown.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import nh3

ALLOWED_TAGS = frozenset(
    {"p", "br", "hr", "a", "strong", "b", "em", "i", "code", "pre", "blockquote",
     "ul", "ol", "li", "h2", "h3", "h4", "img"}
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
DROPPED_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "template", "noscript"})
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
IMAGE_SCHEMES = frozenset({"http", "https"})

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_INVISIBLE_RE = re.compile(r"[\x00-\x20\x7f]")  # browsers ignore these inside "java\tscript:"
_BLOCK_RE = re.compile(r"<(/?)(p|div|br|hr|li|ul|ol|h[1-6]|tr|td|th|blockquote|pre|section|article)\b", re.I)


@dataclass(frozen=True)
class UrlCheck:
    """The outcome of checking one URL: `url` is absolute and allowed, or None with a `reason`."""

    url: str | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.url is not None


def shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_url(raw: str | None, base: str | None = None, *, image: bool = False) -> UrlCheck:
    """Check one URL against the policy, resolving a relative URL against `base`."""
    if raw is None or not raw.strip():
        return UrlCheck(None, "empty URL")
    value = raw.strip()
    probe = _INVISIBLE_RE.sub("", value)
    allowed = IMAGE_SCHEMES if image else LINK_SCHEMES
    names = ", ".join(sorted(allowed))
    match = _SCHEME_RE.match(probe)
    if match:
        scheme = match.group(1).lower()
        if scheme not in allowed:
            return UrlCheck(None, f"{scheme}: URLs are not allowed (only {names}): {shorten(value)}")
        value = probe
    else:
        if not base or not _SCHEME_RE.match(base) or urlsplit(base).scheme.lower() not in IMAGE_SCHEMES:
            return UrlCheck(None, f"relative URL with no feed link to resolve it against: {shorten(value)}")
        value = urljoin(base, value.replace("\\", "/"))
        scheme = urlsplit(value).scheme.lower()
    value = value.replace(" ", "%20").replace('"', "%22").replace("<", "%3C").replace(">", "%3E")
    if scheme in IMAGE_SCHEMES:
        parts = urlsplit(value)
        if not parts.netloc or not parts.hostname:
            return UrlCheck(None, f"{scheme}: URL has no host: {shorten(value)}")
        value = parts._replace(scheme=scheme, netloc=parts.netloc.lower()).geturl()
    return UrlCheck(value)


@dataclass(frozen=True)
class CleanHtml:
    html: str                             # allow-listed HTML, every URL absolute http(s)/mailto
    rejected: tuple[str, ...] = ()        # one reason per removed link or image
    images: tuple[tuple[str, str], ...] = ()  # (src, alt) of the images kept, in order


class _UrlCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str | None]] = []  # (tag, attribute, value)
        self.images: list[tuple[str | None, str]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_WITH_CONTENT:
            self._skip += 1
        if self._skip:
            return
        values = dict(attrs)
        if tag == "a" and "href" in values:
            self.urls.append((tag, "href", values["href"]))
        elif tag == "img":
            self.urls.append((tag, "src", values.get("src")))
            self.images.append((values.get("src"), values.get("alt") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_WITH_CONTENT and self._skip:
            self._skip -= 1


def clean_html(fragment: str, base: str | None = None) -> CleanHtml:
    """Allow-list sanitise an HTML fragment and make every kept URL absolute."""
    collector = _UrlCollector()
    collector.feed(fragment or "")
    collector.close()
    rejected: list[str] = []
    for tag, _attr, value in collector.urls:
        check = check_url(value, base, image=tag == "img")
        if not check.ok:
            rejected.append(f"{'image' if tag == 'img' else 'link'} removed: {check.reason}")

    def resolve(tag: str, attr: str, value: str) -> str | None:
        if (tag, attr) in {("a", "href"), ("img", "src")}:
            return check_url(value, base, image=tag == "img").url  # nh3 passes it decoded
        return value

    cleaned = nh3.clean(
        fragment or "",
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=resolve,
        url_schemes=set(LINK_SCHEMES),
        link_rel="noopener noreferrer",
    )
    images = []
    for src, alt in collector.images:
        check = check_url(src, base, image=True)
        if check.url:
            images.append((check.url, fragment_to_text(alt)))
    return CleanHtml(cleaned, tuple(rejected), tuple(images))


def fragment_to_text(fragment: str | None) -> str:
    """Plain text from an HTML fragment: tags removed (script/style with their content), entities
    decoded once, whitespace collapsed."""
    if not fragment:
        return ""
    spaced = _BLOCK_RE.sub(r" <\1\2", fragment)
    text = nh3.clean(spaced, tags=set(), clean_content_tags=set(DROPPED_WITH_CONTENT))
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def plain_text(value: str | None) -> str:
    """Collapse whitespace in text that is already plain (no decoding: it is text, not HTML)."""
    return re.sub(r"\s+", " ", value or "").strip()


def summarise(text: str, max_chars: int = 280) -> str:
    """The first sentence or two of plain text, at most `max_chars` (cut at a word with '…')."""
    text = plain_text(text)
    if len(text) <= max_chars:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    summary = ""
    for sentence in sentences[:2]:
        candidate = f"{summary} {sentence}".strip()
        if len(candidate) > max_chars:
            break
        summary = candidate
    if summary:
        return summary
    cut = text[: max_chars - 1]
    if " " in cut[max_chars // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
_MD_ENTITY = re.compile(r"&(?=#?\w+;)")
_MD_LINE_START = re.compile(r"^(\s*)([#+\-=]|\d+[.)])")


def escape_markdown(text: str, *, line_start: bool = False) -> str:
    """Escape text so Markdown shows it literally (no markup, no HTML, no entity decoding)."""
    text = _MD_ENTITY.sub(r"\\&", _MD_SPECIAL.sub(r"\\\1", text))
    if line_start:
        text = _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    return text


def _md_url(url: str) -> str:
    return f"<{url}>" if re.search(r"[\s()]", url) else url


class _MarkdownWriter(HTMLParser):
    """Markdown from HTML that clean_html() has already sanitised (allowed tags only)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.fresh = True
        self.pre = 0
        self.lists: list[list[int]] = []  # per open list: [next number] or [] when bulleted
        self.links: list[str | None] = []

    def block(self, prefix: str = "") -> None:
        self.out.append("\n\n" + prefix)
        self.fresh = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in {"p", "ul", "ol", "pre", "blockquote"}:
            self.block("> " if tag == "blockquote" else ("```\n" if tag == "pre" else ""))
            self.pre += tag == "pre"
            if tag in {"ul", "ol"}:
                self.lists.append([1] if tag == "ol" else [])
        elif tag in {"h2", "h3", "h4"}:
            self.block("#" * int(tag[1]) + " ")
        elif tag == "hr":
            self.block("---")
            self.block()
        elif tag == "br":
            self.out.append("\\\n")
        elif tag == "li":
            counter = self.lists[-1] if self.lists else []
            marker = f"{counter[0]}. " if counter else "- "
            if counter:
                counter[0] += 1
            self.out.append("\n" + "   " * max(len(self.lists) - 1, 0) + marker)
            self.fresh = True
        elif tag in {"strong", "b"}:
            self.out.append("**")
        elif tag in {"em", "i"}:
            self.out.append("*")
        elif tag == "code" and not self.pre:
            self.out.append("`")
        elif tag == "a":
            href = values.get("href")
            self.links.append(href)
            if href:
                self.out.append("[")
        elif tag == "img" and values.get("src"):
            alt = escape_markdown(plain_text(values.get("alt")))
            self.out.append(f"![{alt}]({_md_url(values['src'] or '')})")
            self.fresh = False

    def handle_endtag(self, tag: str) -> None:
        if tag in {"p", "h2", "h3", "h4", "blockquote"}:
            self.block()
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)
            self.out.append("\n```")
            self.block()
        elif tag in {"ul", "ol"}:
            if self.lists:
                self.lists.pop()
            self.block()
        elif tag in {"strong", "b"}:
            self.out.append("**")
        elif tag in {"em", "i"}:
            self.out.append("*")
        elif tag == "code" and not self.pre:
            self.out.append("`")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href:
                self.out.append(f"]({_md_url(href)})")

    def handle_data(self, data: str) -> None:
        if self.pre:
            self.out.append(data.replace("```", "ʼʼʼ"))
            return
        text = re.sub(r"\s+", " ", data)
        if self.fresh:
            text = text.lstrip()
            if not text:
                return
        self.out.append(escape_markdown(text, line_start=self.fresh))
        self.fresh = False

    def markdown(self) -> str:
        text = "".join(self.out)
        text = re.sub(r"[ \t]+\n", "\n", text)
        text = re.sub(r"\n(> )?\n(> )?\n+", "\n\n", text)
        text = "\n".join(line for line in text.split("\n") if line.strip() != ">")
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_markdown(fragment: str, base: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Sanitise feed HTML and convert it to Markdown: (markdown, reasons for removed URLs)."""
    cleaned = clean_html(fragment, base)
    writer = _MarkdownWriter()
    writer.feed(cleaned.html)
    writer.close()
    return writer.markdown(), cleaned.rejected
