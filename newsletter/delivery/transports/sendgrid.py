"""SendGridTransport: POST each request to `{SENDGRID_HOST}/v3/mail/send`.

`SendGridAPIClient(api_key, host=...)` from the official library supplies the endpoint and the
request headers (Bearer auth, User-Agent). The POST itself is made with `http.client`, one
connection per request, because exactly-once delivery needs to know WHERE a failure happened:
connecting (nothing sent: `ConnectionFailed`, safe to retry) or waiting for the answer after the
body was sent (`OutcomeUnknown`: the batch becomes uncertain). The official client folds both into
one urllib error. An EU data-residency host (https://api.eu.sendgrid.com) works the same.
The API key is never logged or put in an error message.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from urllib.parse import urlsplit

from sendgrid import SendGridAPIClient

from newsletter.delivery.transports.base import (
    ConnectionFailed,
    MailRequest,
    OutcomeUnknown,
    TransportResponse,
)
from newsletter.errors import ConfigError

MAIL_SEND_PATH = "/v3/mail/send"


class SendGridTransport:
    name = "sendgrid"

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com", timeout: float = 30.0) -> None:
        if not api_key:
            raise ConfigError("no SendGrid API key", hint="set SENDGRID_API_KEY (or NEWSLETTER_SENDGRID_API_KEY)")
        client = SendGridAPIClient(api_key, host=host)
        parts = urlsplit(client.host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"invalid SendGrid host {host!r}", hint="e.g. https://api.eu.sendgrid.com")
        self.host = client.host
        self._scheme = parts.scheme
        self._hostname = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + MAIL_SEND_PATH
        self._headers = {k: str(v) for k, v in client.client.request_headers.items()}
        self._headers["Content-Type"] = "application/json"
        self._headers["Connection"] = "close"
        self._timeout = timeout
        self._context = ssl.create_default_context() if parts.scheme == "https" else None

    def __repr__(self) -> str:  # never show the key
        return f"SendGridTransport(host={self.host!r})"

    def _connection(self) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(
                self._hostname, self._port, timeout=self._timeout, context=self._context
            )
        return http.client.HTTPConnection(self._hostname, self._port, timeout=self._timeout)

    def send(self, request: MailRequest) -> TransportResponse:
        """One POST, finished (answer read) within `timeout` seconds in all: a server that answers
        one byte at a time is cut off at the deadline, like one that does not answer at all."""
        conn = self._connection()
        expired = threading.Event()

        def cut_off() -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(self._timeout, cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionFailed(f"cannot connect to {self.host}: {exc.__class__.__name__}: {exc}") from None
            try:
                headers = {**self._headers, "Content-Length": str(len(request.body))}
                conn.request("POST", self._path, body=request.body, headers=headers)
            except (OSError, http.client.HTTPException) as exc:
                # The body was not completely sent, so the provider cannot have accepted it.
                raise ConnectionFailed(f"sending to {self.host} failed: {exc.__class__.__name__}: {exc}") from None
            try:
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                if expired.is_set() or isinstance(exc, TimeoutError):
                    raise OutcomeUnknown(
                        f"no complete answer from {self.host} within {self._timeout:g}s after sending") from None
                raise OutcomeUnknown(
                    f"connection to {self.host} lost after sending: {exc.__class__.__name__}"
                ) from None
            return TransportResponse(
                response.status, dict(response.getheaders()), body.decode("utf-8", "replace")
            )
        finally:
            watchdog.cancel()
            conn.close()
