"""One static preview page for a built edition: every variant side by side at 600 px and 375 px,
with its inbox line (from, subject, preheader), gate results and plain-text part.

The page is self-contained (each variant's HTML sits in a sandboxed `srcdoc` iframe with scripts
disabled), has no JavaScript of its own, and escapes every piece of text it shows. Per-recipient
placeholder tokens are filled with the sample member's values, exactly as in the build's .eml files
(the page shows their parts), so links and greetings read naturally.
"""

from __future__ import annotations

import email
import html
import threading
from collections.abc import Mapping
from email import policy
from email.message import EmailMessage
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from newsletter.errors import GateFailed, InputError
from newsletter.render.build import Build, load_build
from newsletter.render.placeholders import SAMPLE_RECIPIENT
from newsletter.render.record import VariantRecord

WIDTHS = (600, 375)
PAGE_CSP = ("default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
            "font-src https: data:; frame-src 'self' about:; base-uri 'none'; form-action 'none'")

PAGE_STYLE = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#eef0f3;color:#1d2330}
header.page{padding:16px 24px;background:#1d2330;color:#fff}
header.page h1{margin:0 0 4px;font-size:20px}
header.page p{margin:0;color:#c9d0dc}
main{display:flex;gap:24px;padding:24px;overflow-x:auto;align-items:flex-start}
section.variant{flex:none;background:#fff;border-radius:8px;padding:16px;box-shadow:0 1px 3px rgba(0,0,0,.15)}
section.variant h2{margin:0 0 8px;font-size:18px}
.inbox{border:1px solid #d5dae1;border-radius:6px;padding:8px 12px;margin-bottom:8px;max-width:975px}
.inbox .from{font-weight:600}
.inbox .subject{font-weight:600;color:#1d2330}
.inbox .preheader{color:#5c6677}
.meta{color:#5c6677;margin:0 0 8px;max-width:975px;overflow-wrap:anywhere}
.scheduled{color:#0b4f6c;font-weight:600}
.gates .fail{color:#a4001d;font-weight:600}
.gates .warn{color:#8a5a00}
.frames{display:flex;gap:16px;align-items:flex-start}
figure{margin:0}
figcaption{color:#5c6677;font-size:12px;margin-bottom:4px}
iframe{border:1px solid #d5dae1;height:1400px;background:#fff;display:block}
pre{white-space:pre-wrap;word-break:break-word;max-width:975px;background:#f6f7f9;padding:12px;border-radius:6px;font-size:12px}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# Hide the frame's own scrollbar (the page still scrolls) so the email's viewport is exactly
# 600 / 375 px wide, as in a mail client, instead of that minus the scrollbar.
FRAME_STYLE = "<style>html{scrollbar-width:none}::-webkit-scrollbar{display:none}</style>"


def _framed(email_html: str) -> str:
    lower = email_html.lower()
    at = lower.find("<head")
    at = lower.find(">", at) + 1 if at != -1 else 0
    return email_html[:at] + FRAME_STYLE + email_html[at:]


def sample_parts(build: Build, segment: str) -> tuple[str, str]:
    """(HTML, text) of a variant as the sample member receives it: the parts of its .eml, where
    the build filled in the sample recipient's values (one set of sample values for both)."""
    path = build.eml_path(segment)
    try:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    except FileNotFoundError:
        raise InputError(f"{path} is missing from the build", hint="build the edition again") from None
    parts: list[str] = []
    for kind in ("html", "plain"):
        part = message.get_body((kind,))
        content = part.get_content() if isinstance(part, EmailMessage) else ""
        parts.append(content.replace("\r\n", "\n"))  # the message has CRLF line ends; the page LF
    return parts[0], parts[1]


def _variant_section(build: Build, v: VariantRecord, scheduled: str | None = None) -> str:
    email_html, text = sample_parts(build, v.segment)
    email_html = _framed(email_html)
    gate_items = "".join(f'<li class="fail">FAIL: {_e(g)}</li>' for g in v.gates.failed)
    gate_items += "".join(f'<li class="warn">warning: {_e(g)}</li>' for g in v.gates.warnings)
    gate_html = f'<ul class="gates">{gate_items}</ul>' if gate_items else '<p class="meta">gates: all passed</p>'
    when = v.send_at.isoformat() if v.send_at else "not scheduled"
    when_line = (f'<p class="meta scheduled">{_e(scheduled)}</p>' if scheduled else "")
    manifest_time = f'manifest send_at {_e(when)} ({_e(v.zone)})' if scheduled else f'send at {_e(when)} ({_e(v.zone)})'
    frames = "".join(
        f'<figure><figcaption>{w} px</figcaption>'
        f'<iframe title="{_e(v.segment)} at {w} pixels" width="{w}" '
        'sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer" '
        f'loading="lazy" srcdoc="{_e(email_html)}"></iframe></figure>'
        for w in WIDTHS
    )
    return (
        f'<section class="variant" id="{_e(v.segment)}">'
        f"<h2>{_e(v.segment)}</h2>"
        f'<div class="inbox"><div class="from">{_e(v.from_name)} '
        f'&lt;{_e(v.from_email)}&gt;</div>'
        f'<div><span class="subject">{_e(v.subject)}</span> '
        f'<span class="preheader">— {_e(v.preheader)}</span></div></div>'
        f"{when_line}"
        f'<p class="meta">{manifest_time} · '
        f'{v.size} bytes · articles: {_e(", ".join(v.articles))}</p>'
        f"{gate_html}"
        f'<div class="frames">{frames}</div>'
        f"<h3>Plain-text part</h3><pre>{_e(text)}</pre>"
        f"</section>"
    )


def render_preview(build_dir: Path, *, scheduled: Mapping[str, str] | None = None) -> str:
    """The preview page's HTML for a build directory (read with load_build; a build that failed
    a gate is shown too, with the failures). `scheduled` gives, per segment, the line saying when
    it is scheduled to go out (the schedule's time wins over the manifest's send_at, which may be
    older); rendering does not read the schedule itself."""
    try:
        build = load_build(build_dir, for_sending=False)
    except GateFailed as exc:
        raise InputError(exc.message, hint="build the edition first: newsletter build MANIFEST") from None
    record = build.record
    sections = "".join(_variant_section(build, v, (scheduled or {}).get(v.segment)) for v in record.variants)
    title = f"Preview: {record.title or record.edition}"
    count = len(record.variants)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(PAGE_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{PAGE_STYLE}</style></head><body>"
        f'<header class="page"><h1>{_e(title)}</h1>'
        f"<p>edition {_e(record.edition)} · template {_e(record.template)} · "
        f"{count} variant{'s' if count != 1 else ''} · each at {' and '.join(f'{w} px' for w in WIDTHS)} · "
        f"addressed to the sample member {_e(SAMPLE_RECIPIENT.name)}</p></header>"
        f"<main>{sections}</main></body></html>\n"
    )


def write_preview(build_dir: Path, out: Path, *, scheduled: Mapping[str, str] | None = None) -> Path:
    """Write the preview page for `build_dir` to `out`; returns `out`."""
    page = render_preview(build_dir, scheduled=scheduled)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, "utf-8")
    return out


class _OneFileHandler(BaseHTTPRequestHandler):
    """Serves exactly one file (at / and /<name>); nothing else in its directory is reachable."""

    def __init__(self, *args: Any, page: Path, **kwargs: Any) -> None:
        self.page = page
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        if path not in ("/", "/" + self.page.name):
            self.send_error(404, "only the preview page is served here")
            return
        body = self.page.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", PAGE_CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def serve_preview(path: Path, port: int = 0) -> tuple[str, ThreadingHTTPServer]:
    """Serve the preview file on 127.0.0.1 in a background thread: (url, server).
    Stop it with server.shutdown(); server.server_close()."""
    page = path.resolve()
    if not page.is_file():
        raise InputError(f"{path}: no such preview file", hint="write it first with newsletter preview")
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(_OneFileHandler, page=page))
    thread = threading.Thread(target=server.serve_forever, name="preview-server", daemon=True)
    thread.start()
    host, bound_port = server.server_address[:2]
    return f"http://{host}:{bound_port}/{page.name}", server
