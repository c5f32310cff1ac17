"""The plain-text part derived from a rendered HTML email.

Rules: text hidden from readers (`display:none`, e.g. the preheader; <head>, <style>, MSO
conditional comments) is dropped; block elements start new paragraphs; headings are underlined;
list items get "- "; a link becomes `text <url>` (just the URL when the text is the URL), and a
link followed by another link to the same URL (an article's title, then its "Continue reading")
gives its URL only once, at the second. No tags, no entities (entities are decoded).

Lines are wrapped at 78 characters as the member will see them, after SendGrid has filled in the
per-recipient tokens: a first name counts as 40 characters and an address as 64, and a link keeps
its text and URL together (a URL is never broken, so a line that is only a URL may be longer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lxml import etree

WIDTH = 78
# Room kept on a line for what a token becomes (the HTML part's spellings too: the text is
# derived from the HTML before the tokens are swapped for the text part's).
TOKEN_WIDTHS = {"-first_name-": 40, "-first_name_html-": 40, "-email-": 64, "-email_html-": 64,
                "-unsubscribe_url-": 100, "-preferences_url-": 100}
TOKEN_RE = re.compile("|".join(re.escape(t) for t in TOKEN_WIDTHS))
LINK_GLUE = "\x01"  # joins a link's words to its URL: the wrapper keeps them together when it can
NO_BREAK = "\x02"  # a no-break space while wrapping
BLOCK_TAGS = {
    "p", "div", "table", "tr", "td", "th", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "section", "article", "header", "footer", "blockquote", "hr", "tbody", "thead",
}
SKIP_TAGS = {"head", "style", "script", "title", "template"}
VOID_TAGS = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "source", "wbr"}
HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.I)
TAG_LIKE = re.compile(r"<(/?[A-Za-z!][^<>]*)>")
_PARSER = etree.HTMLParser()
PARA = "\x00P\x00"  # paragraph-break marker inside the collected text
LINE = "\x00L\x00"  # forced line break (<br>)
HEADING = re.compile(r"\x00H(\d)\x00(.*?)\x00E\x00", re.S)
HEADING_MARK = re.compile(r"\x00[HE]\d?\x00")
NO_BREAK_BESIDE_SPACE = re.compile(rf"\s+{NO_BREAK}+|{NO_BREAK}+\s+")


class _Collector:
    """Turns start/end/data events into text parts (driven by _walk over lxml's tree)."""

    def __init__(self, hrefs: list[str]) -> None:
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.hidden_depth = 0
        self.links: list[tuple[str, int, int]] = []  # (href, index in parts where its text starts, nth link)
        self.hrefs = hrefs  # every <a href> of the document, in order
        self.seen_links = 0

    def handle_starttag(self, tag: str, attrs: Mapping[str, str]) -> None:
        if tag in VOID_TAGS:
            if not self.hidden_depth and tag == "br":
                self.parts.append(LINE)
            if not self.hidden_depth and tag == "hr":
                self.parts.append(PARA)
            return
        if tag == "a":
            self.seen_links += 1
        hides = tag in SKIP_TAGS or bool(HIDDEN_STYLE.search(attrs.get("style") or ""))
        self.stack.append((tag, hides))
        if hides:
            self.hidden_depth += 1
            return
        if self.hidden_depth:
            return
        if tag in BLOCK_TAGS:
            self.parts.append(PARA)
        if tag == "li":
            self.parts.append("- ")
        if tag in {"h1", "h2", "h3", "h4"}:
            self.parts.append("\x00H" + tag[1] + "\x00")
        if tag == "a":
            self.links.append(((attrs.get("href") or "").strip(), len(self.parts), self.seen_links - 1))

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
        if self.hidden_depth:
            return
        if tag == "a" and self.links:
            href, start, nth = self.links.pop()
            text = " ".join("".join(self.parts[start:]).split())
            repeated = nth + 1 < len(self.hrefs) and self.hrefs[nth + 1] == href
            if href and not href.startswith("#") and not repeated:
                label = href.removeprefix("mailto:")
                # image-only links are dropped: the linked title next to them carries the URL
                if text and text != href and text != label:
                    if "\x00" in "".join(self.parts[start:]):  # a link around blocks: no gluing
                        self.parts.append(f" <{href}>")
                    else:
                        self.parts[start:] = [LINK_GLUE.join(text.split()) + f"{LINK_GLUE}<{href}>"]
        if tag in {"h1", "h2", "h3", "h4"}:
            self.parts.append("\x00E\x00")
        if tag in BLOCK_TAGS:
            self.parts.append(PARA)

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            # text that looks like a tag (a hostile title such as "<script>") is shown with
            # single angle quotes, so no mail client or filter can take it for markup
            self.parts.append(TAG_LIKE.sub("\u2039\\1\u203a", data) if "<" in data else data)


def visible_width(word: str) -> int:
    """A word's width once SendGrid has filled in its tokens (see TOKEN_WIDTHS)."""
    if "-" not in word:  # every token has one
        return len(word)
    return len(word) + sum(TOKEN_WIDTHS[t] - len(t) for t in TOKEN_RE.findall(word))


def _wrap(paragraph: str) -> list[str]:
    """Greedy wrapping at WIDTH of units: a word, or a link (its words glued to its URL). A unit
    that does not fit starts a new line; a link longer than a line puts its URL on a line of its
    own, right after its text. Nothing is broken inside a word or a URL."""
    lines: list[str] = []
    line: list[str] = []
    width = 0

    def put(word: str) -> None:
        nonlocal width
        w = visible_width(word)
        if line and width + 1 + w > WIDTH:
            lines.append(" ".join(line))
            line.clear()
            width = 0
        width += w + (1 if line else 0)
        line.append(word)

    for unit in paragraph.split(" "):
        if LINK_GLUE not in unit:  # a plain word
            put(unit)
            continue
        words = unit.split(LINK_GLUE)
        total = sum(visible_width(w) for w in words) + len(words) - 1
        if line and width + 1 + total > WIDTH:
            lines.append(" ".join(line))  # keep the link's text with its URL: start a new line
            line.clear()
            width = 0
        for word in words:
            put(word)
    if line:
        lines.append(" ".join(line))
    return lines or [""]


def _render_block(block: str) -> list[str]:
    if (not block or block.isspace()) and "\u00a0" not in block:
        return []  # most blocks: the whitespace between two block elements
    heading_level = None
    match = HEADING.search(block)
    if match:
        heading_level = int(match.group(1))
        block = block.replace(match.group(0), match.group(2))
    block = HEADING_MARK.sub("", block)
    lines: list[str] = []
    for piece in block.split(LINE):
        # a no-break space keeps its words on one line (a date, "· Unsubscribe")
        piece = piece.replace("\u00a0", NO_BREAK).replace("\u200c", "").replace("\u034f", "")
        piece = NO_BREAK_BESIDE_SPACE.sub(" ", piece)  # beside a space it is just a space
        text = " ".join(piece.split())
        if text:
            lines.extend(_wrap(text))
    if heading_level and lines:
        underline = "=" if heading_level <= 2 else "-"
        lines.append(underline * min(WIDTH, max(len(line) for line in lines)))
    return lines


def _walk(collector: _Collector, root: etree._Element) -> None:
    """Drive the collector from lxml's parse tree (several times faster than feeding HTMLParser
    the same document); comments and processing instructions are skipped."""
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if not isinstance(element.tag, str):  # comment or processing instruction
            if event == "end" and element.tail:
                collector.handle_data(element.tail)
            continue
        tag = element.tag.lower()
        if event == "start":
            collector.handle_starttag(tag, element.attrib)
            if element.text and tag not in VOID_TAGS:
                collector.handle_data(element.text)
        else:
            collector.handle_endtag(tag)
            if element.tail:
                collector.handle_data(element.tail)


def html_to_text(html: str) -> str:
    """The readable plain-text version of an HTML email (see module docstring)."""
    if not html.strip():
        return "\n"
    # lxml.html.document_fromstring's parse, without its Python element-class lookup per element
    root = etree.fromstring(html, _PARSER)
    if root is None:
        raise etree.ParserError("Document is empty")
    collector = _Collector([(a.get("href") or "").strip() for a in root.iter("a")])
    _walk(collector, root)
    raw = "".join(collector.parts)
    paragraphs = [_render_block(block) for block in raw.split(PARA)]
    out = "\n\n".join("\n".join(lines) for lines in paragraphs if lines)
    return out.replace(LINK_GLUE, " ").replace(NO_BREAK, " ").strip() + "\n"
