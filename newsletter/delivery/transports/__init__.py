"""Transports deliver one Mail Send request. See `base.Transport` and `make_transport`."""

from newsletter.delivery.transports.base import (
    ConnectionFailed,
    MailRequest,
    OutcomeUnknown,
    Transport,
    TransportResponse,
)
from newsletter.delivery.transports.factory import make_transport
from newsletter.delivery.transports.memory import MemoryTransport

__all__ = [
    "ConnectionFailed",
    "MailRequest",
    "MemoryTransport",
    "OutcomeUnknown",
    "Transport",
    "TransportResponse",
    "make_transport",
]
