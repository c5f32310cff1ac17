"""The plain-text part derived from a rendered HTML email.

Rules: text hidden from readers (`display:none`, e.g. the preheader; <head>, <style>, MSO
conditional comments) is dropped; block elements start new paragraphs; headings are underlined;
list items get "- "; a link becomes `text <url>` (just the URL when the text is the URL);
lines are wrapped at 72 characters, never inside a URL. No tags, no entities (entities are decoded).
"""

from __future__ import annotations

import re
import textwrap

import lxml.html
from lxml import etree

WIDTH = 72
BLOCK_TAGS = {
    "p", "div", "table", "tr", "td", "th", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "section", "article", "header", "footer", "blockquote", "hr", "tbody", "thead",
}
SKIP_TAGS = {"head", "style", "script", "title", "template"}
VOID_TAGS = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "source", "wbr"}
HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.I)
TAG_LIKE = re.compile(r"<(/?[A-Za-z!][^<>]*)>")
PARA = "\x00P\x00"  # paragraph-break marker inside the collected text
LINE = "\x00L\x00"  # forced line break (<br>)


class _Collector:
    """Turns start/end/data events into text parts (driven by _walk over lxml's tree)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.hidden_depth = 0
        self.links: list[tuple[str, int]] = []  # (href, index in parts where the link text starts)

    def _hidden(self) -> bool:
        return self.hidden_depth > 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag in VOID_TAGS:
            if not self._hidden() and tag == "br":
                self.parts.append(LINE)
            if not self._hidden() and tag == "hr":
                self.parts.append(PARA)
            return
        hides = tag in SKIP_TAGS or bool(HIDDEN_STYLE.search(attr.get("style", "")))
        self.stack.append((tag, hides))
        if hides:
            self.hidden_depth += 1
            return
        if self._hidden():
            return
        if tag in BLOCK_TAGS:
            self.parts.append(PARA)
        if tag == "li":
            self.parts.append("- ")
        if tag in {"h1", "h2", "h3", "h4"}:
            self.parts.append("\x00H" + tag[1] + "\x00")
        if tag == "a":
            self.links.append((attr.get("href", "").strip(), len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        # pop to the matching open tag (tolerates sloppy HTML)
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                for _, hides in self.stack[index:]:
                    if hides:
                        self.hidden_depth -= 1
                del self.stack[index:]
                break
        else:
            return
        if self._hidden():
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            text = " ".join("".join(self.parts[start:]).split())
            if href and not href.startswith("#"):
                label = href.removeprefix("mailto:")
                # image-only links are dropped: the linked title next to them carries the URL
                if text and text != href and text != label:
                    self.parts.append(f" <{href}>")
        if tag in {"h1", "h2", "h3", "h4"}:
            self.parts.append("\x00E\x00")
        if tag in BLOCK_TAGS:
            self.parts.append(PARA)

    def handle_data(self, data: str) -> None:
        if not self._hidden():
            # text that looks like a tag (a hostile title such as "<script>") is shown with
            # single angle quotes, so no mail client or filter can take it for markup
            self.parts.append(TAG_LIKE.sub("\u2039\\1\u203a", data))


def _wrap(paragraph: str) -> list[str]:
    wrapper = textwrap.TextWrapper(width=WIDTH, break_long_words=False, break_on_hyphens=False)
    return wrapper.wrap(paragraph) or [""]


def _render_block(block: str) -> list[str]:
    heading_level = None
    match = re.search(r"\x00H(\d)\x00(.*?)\x00E\x00", block, re.S)
    if match:
        heading_level = int(match.group(1))
        block = block.replace(match.group(0), match.group(2))
    block = re.sub(r"\x00[HE]\d?\x00", "", block)
    lines: list[str] = []
    for piece in block.split(LINE):
        text = " ".join(piece.replace("\u00a0", " ").replace("\u200c", "").split())
        if text:
            lines.extend(_wrap(text))
    if heading_level and lines:
        underline = "=" if heading_level <= 2 else "-"
        lines.append(underline * min(WIDTH, max(len(line) for line in lines)))
    return lines


def _walk(collector: _Collector, html: str) -> None:
    """Drive the collector from lxml's parse tree (several times faster than feeding HTMLParser
    the same document); comments and processing instructions are skipped."""
    root = lxml.html.document_fromstring(html)
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if not isinstance(element.tag, str):  # comment or processing instruction
            if event == "end" and element.tail:
                collector.handle_data(element.tail)
            continue
        tag = element.tag.lower()
        if event == "start":
            collector.handle_starttag(tag, list(element.attrib.items()))
            if element.text and tag not in VOID_TAGS:
                collector.handle_data(element.text)
        else:
            collector.handle_endtag(tag)
            if element.tail:
                collector.handle_data(element.tail)


def html_to_text(html: str) -> str:
    """The readable plain-text version of an HTML email (see module docstring)."""
    collector = _Collector()
    if html.strip():
        _walk(collector, html)
    raw = "".join(collector.parts)
    paragraphs = [_render_block(block) for block in raw.split(PARA)]
    out = "\n\n".join("\n".join(lines) for lines in paragraphs if lines)
    return out.strip() + "\n"
