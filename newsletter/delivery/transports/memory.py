"""MemoryTransport: records every request in memory; answers and faults are scriptable.

For tests (ours and yours), like httpx.MockTransport:

    transport = MemoryTransport()                         # every request gets 202
    transport = MemoryTransport(script=[TransportResponse(429, {"Retry-After": "1"}), OutcomeUnknown("x")])
    transport = MemoryTransport(handler=lambda request: TransportResponse(202))
    send_edition(db, settings, build_dir, transport=transport)
    transport.personalizations()   # every personalization sent, in order

A script item is a TransportResponse (returned) or an exception (raised); once the script is used
up, the handler (default: 202 with an X-Message-Id) answers.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from newsletter.delivery.transports.base import MailRequest, TransportResponse

Handler = Callable[[MailRequest], TransportResponse]


class MemoryTransport:
    name = "memory"

    def __init__(
        self,
        script: Iterable[TransportResponse | BaseException] = (),
        handler: Handler | None = None,
    ) -> None:
        self.requests: list[MailRequest] = []  # every request the transport was given
        self.delivered: list[MailRequest] = []  # the ones answered with 2xx
        self._script = list(script)
        self._handler = handler or self._accept
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def _accept(self, request: MailRequest) -> TransportResponse:
        return TransportResponse(202, {"X-Message-Id": f"memory-{next(self._ids)}"})

    def send(self, request: MailRequest) -> TransportResponse:
        with self._lock:
            self.requests.append(request)
            step = self._script.pop(0) if self._script else None
        if isinstance(step, BaseException):
            raise step
        response = step if step is not None else self._handler(request)
        if 200 <= response.status < 300:
            with self._lock:
                self.delivered.append(request)
        return response

    def personalizations(self) -> list[dict[str, Any]]:
        """Every personalization of every accepted request."""
        return [p for r in self.delivered for p in r.json()["personalizations"]]

    def recipients(self) -> list[str]:
        """The `to` address of every accepted personalization."""
        return [p["to"][0]["email"] for p in self.personalizations()]
