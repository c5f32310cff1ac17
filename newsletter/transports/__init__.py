"""Transports deliver one Mail Send request. See `base.Transport` and `make_transport`."""

from newsletter.transports.base import (
    ConnectionFailed,
    MailRequest,
    OutcomeUnknown,
    Transport,
    TransportResponse,
)
from newsletter.transports.factory import make_transport

__all__ = [
    "ConnectionFailed",
    "MailRequest",
    "OutcomeUnknown",
    "Transport",
    "TransportResponse",
    "make_transport",
]
