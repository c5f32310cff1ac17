"""Request rate caps: one limiter per process, shared by every thread and every send in it, and one
cap per database, shared by every sender and daemon using it (on one host or, with PostgreSQL,
several).

The database cap is one row of `rate_limits`: the earliest time (Unix seconds, on the database's
clock) at which the next request may start. Taking a slot is one UPDATE … RETURNING that moves it on
by 1/rate, so N processes together start at most `rate` requests per second. A 429 moves it to the
end of SendGrid's pause, so every sender waits, not only the one that was told.

Slots are spaced a little wider than 1/rate (RATE_MARGIN), so the jitter between taking a slot and
the request reaching SendGrid cannot put rate + 1 requests into one second there.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from newsletter.db import Database

RATE_MARGIN = 0.05
BUCKET = "sendgrid"


class ProcessLimiter:
    """Spacing of 1/rate between request starts over every thread of this process, plus a shared
    pause after a 429. Use `process_limiter(rate)`: one per rate per process."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def reserve(self) -> float:
        """Take the next start time; returns seconds to wait for it (0 when due now)."""
        with self.lock:
            t = time.monotonic()
            slot = max(t, self.next_at, self.paused_until)
            self.next_at = slot + self.interval
            return slot - t


_LIMITERS: dict[float, ProcessLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def process_limiter(rate: float) -> ProcessLimiter:
    """This process's limiter for `rate` requests per second (the same object for every caller)."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(rate)
        if limiter is None:
            limiter = _LIMITERS[rate] = ProcessLimiter(rate)
        return limiter


class DatabaseRate:
    """The per-database cap (see the module docstring)."""

    def __init__(self, db: Database, rate: float, name: str = BUCKET) -> None:
        self.db, self.name = db, name
        self.interval = (1.0 + RATE_MARGIN) / rate
        if db.dialect == "postgresql":
            clock = "extract(epoch from clock_timestamp())"
            self._take = text(
                f"UPDATE rate_limits SET next_at = greatest(next_at, {clock}) + :interval "
                f"WHERE name = :name RETURNING next_at - :interval - {clock}")
            self._pause = text(f"UPDATE rate_limits SET next_at = greatest(next_at, {clock} + :seconds) "
                               "WHERE name = :name")
        else:
            self._take = text("UPDATE rate_limits SET next_at = max(next_at, :now) + :interval "
                              "WHERE name = :name RETURNING next_at - :interval - :now")
            self._pause = text("UPDATE rate_limits SET next_at = max(next_at, :now + :seconds) WHERE name = :name")

    def _ensure_row(self) -> None:
        try:
            with self.db.write_session() as session:
                session.execute(text("INSERT INTO rate_limits (name, next_at) VALUES (:name, 0)"), {"name": self.name})
        except IntegrityError:
            pass  # another sender created it first

    def reserve(self) -> float:
        """Take the next slot; returns seconds from now until it (0 or more)."""
        params = {"name": self.name, "interval": self.interval, "now": time.time()}
        with self.db.write_session() as session:
            wait = session.execute(self._take, params).scalar()
        if wait is None:
            self._ensure_row()
            return self.reserve()
        return max(0.0, float(wait))

    def pause(self, seconds: float) -> None:
        """Nobody using this database starts a request for `seconds` (SendGrid said 429)."""
        with self.db.write_session() as session:
            session.execute(self._pause, {"name": self.name, "seconds": seconds, "now": time.time()})
