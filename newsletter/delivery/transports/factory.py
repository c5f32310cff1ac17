"""make_transport: the transport named on the command line, in settings, or chosen automatically."""

from __future__ import annotations

from pathlib import Path

from newsletter.config import Settings
from newsletter.delivery.transports.base import Transport
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.delivery.transports.outbox import OutboxTransport
from newsletter.delivery.transports.sendgrid import SendGridTransport
from newsletter.errors import ConfigError


def make_transport(settings: Settings, name: str | None = None, *, outbox_dir: Path | None = None) -> Transport:
    """outbox | sendgrid | memory. None = settings.transport; "auto" = sendgrid when an API key is
    set, otherwise the outbox (settings.outbox_dir, or `outbox_dir`). InputError when the outbox
    directory cannot be created or written."""
    choice = name or settings.transport
    key = settings.sendgrid_api_key.get_secret_value() if settings.sendgrid_api_key else ""
    if choice == "auto":
        choice = "sendgrid" if key else "outbox"
    if choice == "outbox":

        directory = settings.path(outbox_dir) if outbox_dir else settings.resolved_outbox_dir
        outbox = OutboxTransport(directory)
        outbox.check_writable()  # a wrong --outbox fails here, before any audience is frozen
        return outbox
    if choice == "sendgrid":

        if not key:
            raise ConfigError(
                "the sendgrid transport needs an API key",
                hint="set SENDGRID_API_KEY, or use --transport outbox",
            )
        return SendGridTransport(key, settings.sendgrid_host, settings.request_timeout)
    if choice == "memory":

        return MemoryTransport()
    raise ConfigError(f"unknown transport {choice!r}", hint="use outbox, sendgrid or memory")
