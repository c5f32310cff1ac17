"""The transport protocol: deliver one SendGrid v3 Mail Send request and report what happened.

A transport answers with a `TransportResponse` for every HTTP answer (2xx, 4xx, 5xx alike; the
sender decides what a status means) and raises only these errors:

    TransportError (newsletter.errors)
    ├── ConnectionFailed   the request certainly did NOT reach the provider (DNS, refused, reset
    │                      or timeout while connecting, before any byte of the body was sent):
    │                      safe to retry.
    └── OutcomeUnknown     the request may have reached the provider (timeout or reset after the
                           body was sent, before a full answer): NOT safe to retry blindly; the
                           batch becomes "uncertain".

Transports must be safe to call from several threads at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from newsletter.errors import TransportError


class ConnectionFailed(TransportError):
    """The request was not sent; retrying cannot cause a duplicate."""


class OutcomeUnknown(TransportError):
    """The request may have been received; retrying could send it twice."""


@dataclass(frozen=True)
class MailRequest:
    """One Mail Send request: the JSON body (bytes) plus where it belongs."""

    edition: str
    segment: str
    batch_seq: int
    body: bytes
    recipient_count: int

    def json(self) -> dict[str, Any]:
        """The body parsed (for tests and the outbox)."""
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass(frozen=True)
class TransportResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lower:
                return value
        return None


@runtime_checkable
class Transport(Protocol):
    name: str

    def send(self, request: MailRequest) -> TransportResponse:
        """Deliver one request; raise ConnectionFailed / OutcomeUnknown as documented above."""
        ...
