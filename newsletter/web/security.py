"""What every response of the member web carries, and what never reaches a log.

- Security headers on every answer: a Content-Security-Policy without inline script (pages load
  only our own CSS and, where it earns its keep, our own JS), `X-Frame-Options: DENY`,
  `Referrer-Policy: no-referrer` (a token in a URL never leaks to another site), `nosniff`, and
  `Cache-Control: no-store` on pages reached by a member's link.
- Tokens never in logs: the access log line of `/u/<token>` (and /p, /c, /e) shows `/u/…`.
- Forms: a POST from another site's page is refused (`Sec-Fetch-Site: cross-site`, or an `Origin`
  that is not ours) before any form token is even read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
# An archived email: its own inline styles and remote images, and nothing that runs.
EMAIL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'none'; "
             "frame-ancestors 'none'; base-uri 'none'")
TOKEN_PATH = re.compile(r"/(u|p|c|e|admin/set-password)/[^/?#\s\"]+")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def redact(text: str) -> str:
    """`text` with every member-link token replaced by `…`."""
    return TOKEN_PATH.sub(lambda m: f"/{m[1]}/…", text)


class RedactTokens(logging.Filter):
    """A filter for the access log (uvicorn.access) and any logger that may print a path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "newsletter.web"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


class SecurityHeaders:
    """ASGI middleware adding the headers above (a handler may set its own CSP first)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        token_page = bool(TOKEN_PATH.match(path))
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"DENY"),
                         (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"cross-origin-opener-policy", b"same-origin"),
                         (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()")]
                if token_page:
                    extra.append((b"cache-control", b"no-store"))
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(k, v) for k, v in extra if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def cross_site(request: Request) -> bool:
    """True for a browser POST made by another site's page."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None or origin == "null":  # our own pages send "null": they set Referrer-Policy: no-referrer
        return False
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") != host
