"""Request bodies, read with a size cap (413 beyond it), as form fields.

Both encodings an RFC 8058 one-click POST may use are read: `application/x-www-form-urlencoded`
(what most mail providers send) and `multipart/form-data` (what the RFC recommends).
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

from starlette.requests import Request

FORM_LIMIT = 64 * 1024
WEBHOOK_LIMIT = 5 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or BodyTooLarge as soon as it passes `limit` bytes (never read whole first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def form_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    """Field name → values. Unreadable bodies give no fields (the caller then refuses the request)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return _multipart(content_type, body)
    if kind in ("application/x-www-form-urlencoded", ""):
        try:
            return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            return {}
    return {}


def _multipart(content_type: str, body: bytes) -> dict[str, list[str]]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, list[str]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            try:
                fields.setdefault(name, []).append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                continue
    return fields


def field(fields: dict[str, list[str]], name: str) -> str:
    """The first value of a field, or ""."""
    values = fields.get(name)
    return values[0] if values else ""


def is_one_click(fields: dict[str, list[str]]) -> bool:
    """Exactly the RFC 8058 body: one field List-Unsubscribe=One-Click."""
    return fields == {"List-Unsubscribe": ["One-Click"]}
