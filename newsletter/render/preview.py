"""One static preview page for a built edition: every variant side by side at 600 px and 375 px,
with its inbox line (from, subject, preheader), gate results and plain-text part.

The page is self-contained (each variant's HTML sits in a sandboxed `srcdoc` iframe with scripts
disabled), has no JavaScript of its own, and escapes every piece of text it shows. Per-recipient
placeholder tokens are filled with sample values so links and greetings read naturally.
"""

from __future__ import annotations

import html
import json
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from newsletter.errors import InputError

WIDTHS = (600, 375)
SAMPLE_VALUES = {
    "-first_name-": "Alex",
    "-email-": "alex.member@example.org",
    "-unsubscribe_url-": "https://www.example.org/newsletter/unsubscribe/preview",
    "-preferences_url-": "https://www.example.org/newsletter/preferences/preview",
}
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
.gates .fail{color:#a4001d;font-weight:600}
.gates .warn{color:#8a5a00}
.frames{display:flex;gap:16px;align-items:flex-start}
figure{margin:0}
figcaption{color:#5c6677;font-size:12px;margin-bottom:4px}
iframe{border:1px solid #d5dae1;height:1400px;background:#fff;display:block}
pre{white-space:pre-wrap;word-break:break-word;max-width:975px;background:#f6f7f9;padding:12px;border-radius:6px;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _read_build(build_dir: Path) -> dict[str, Any]:
    manifest = build_dir / "build.json"
    if not manifest.is_file():
        raise InputError(f"{build_dir}: no build.json here", hint="build the edition first: newsletter build MANIFEST")
    try:
        data = json.loads(manifest.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest}: not valid JSON ({exc})", hint="rebuild the edition") from None
    if not isinstance(data, dict) or not isinstance(data.get("variants"), dict):
        raise InputError(f"{manifest}: no 'variants' mapping", hint="rebuild the edition")
    return data


def _read_part(build_dir: Path, name: Any) -> str:
    if not isinstance(name, str) or not name or Path(name).name != name:
        return ""
    path = build_dir / name
    return path.read_text("utf-8", "replace") if path.is_file() else ""


# Hide the frame's own scrollbar (the page still scrolls) so the email's viewport is exactly
# 600 / 375 px wide, as in a mail client, instead of that minus the scrollbar.
FRAME_STYLE = "<style>html{scrollbar-width:none}::-webkit-scrollbar{display:none}</style>"


def _framed(email_html: str) -> str:
    lower = email_html.lower()
    at = lower.find("<head")
    at = lower.find(">", at) + 1 if at != -1 else 0
    return email_html[:at] + FRAME_STYLE + email_html[at:]


def with_sample_values(text: str) -> str:
    for token, value in SAMPLE_VALUES.items():
        text = text.replace(token, value)
    return text


def _variant_section(build_dir: Path, segment: str, info: dict[str, Any]) -> str:
    email_html = _framed(with_sample_values(_read_part(build_dir, info.get("html"))))
    text = with_sample_values(_read_part(build_dir, info.get("text")))
    gates = info.get("gates") or {}
    failed = [str(g) for g in gates.get("failed") or ()]
    warnings = [str(g) for g in gates.get("warnings") or ()]
    gate_items = "".join(f'<li class="fail">FAIL: {_e(g)}</li>' for g in failed)
    gate_items += "".join(f'<li class="warn">warning: {_e(g)}</li>' for g in warnings)
    gate_html = f'<ul class="gates">{gate_items}</ul>' if gate_items else '<p class="meta">gates: all passed</p>'
    size = info.get("size")
    when = info.get("send_at") or "not scheduled"
    articles = ", ".join(str(s) for s in info.get("articles") or ())
    frames = "".join(
        f'<figure><figcaption>{w} px</figcaption>'
        f'<iframe title="{_e(segment)} at {w} pixels" width="{w}" '
        'sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer" '
        f'loading="lazy" srcdoc="{_e(email_html)}"></iframe></figure>'
        for w in WIDTHS
    )
    return (
        f'<section class="variant" id="{_e(segment)}">'
        f"<h2>{_e(segment)}</h2>"
        f'<div class="inbox"><div class="from">{_e(info.get("from_name"))} '
        f'&lt;{_e(info.get("from_email"))}&gt;</div>'
        f'<div><span class="subject">{_e(info.get("subject"))}</span> '
        f'<span class="preheader">— {_e(info.get("preheader"))}</span></div></div>'
        f'<p class="meta">send at {_e(when)} ({_e(info.get("zone"))}) · '
        f'{_e(size) if size is not None else "?"} bytes · articles: {_e(articles)}</p>'
        f"{gate_html}"
        f'<div class="frames">{frames}</div>'
        f"<h3>Plain-text part</h3><pre>{_e(text)}</pre>"
        f"</section>"
    )


def render_preview(build_dir: Path) -> str:
    """The preview page's HTML for a build directory (see build.json in CONTRACTS)."""
    data = _read_build(build_dir)
    sections = "".join(
        _variant_section(build_dir, str(segment), info if isinstance(info, dict) else {})
        for segment, info in data["variants"].items()
    )
    title = f"Preview: {data.get('title') or data.get('edition') or build_dir.name}"
    count = len(data["variants"])
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(PAGE_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{PAGE_STYLE}</style></head><body>"
        f'<header class="page"><h1>{_e(title)}</h1>'
        f"<p>edition {_e(data.get('edition'))} · template {_e(data.get('template'))} · "
        f"{count} variant{'s' if count != 1 else ''} · each at {' and '.join(f'{w} px' for w in WIDTHS)} · "
        "placeholders filled with sample recipient values</p></header>"
        f"<main>{sections}</main></body></html>\n"
    )


def write_preview(build_dir: Path, out: Path) -> Path:
    """Write the preview page for `build_dir` to `out`; returns `out`."""
    page = render_preview(build_dir)
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
