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

RATE_MARGIN = 0.10
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

    def due_in(self) -> float:
        """Seconds until a request could start (without taking the slot)."""
        with self.lock:
            return max(0.0, self.next_at - time.monotonic(), self.paused_until - time.monotonic())

    def reserve(self) -> float:
        """Take the next start time; returns it (time.monotonic())."""
        with self.lock:
            slot = max(time.monotonic(), self.next_at, self.paused_until)
            self.next_at = slot + self.interval
            return slot


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
    """The per-database cap (see the module docstring). Times are Unix seconds read from the
    database's clock inside the statement, so a statement that waited for a lock books from when
    it ran, not from when it was asked."""

    def __init__(self, db: Database, rate: float, name: str = BUCKET) -> None:
        self.db, self.name = db, name
        self.interval = (1.0 + RATE_MARGIN) / rate
        clock = ("extract(epoch from clock_timestamp())" if db.dialect == "postgresql"
                 else "((julianday('now') - 2440587.5) * 86400.0)")
        self._take = text(f"UPDATE rate_limits SET next_at = {_greatest(db)}(next_at, {clock}) + :interval "
                          "WHERE name = :name RETURNING next_at - :interval")
        self._pause = text(f"UPDATE rate_limits SET next_at = {_greatest(db)}(next_at, {clock} + :seconds) "
                           "WHERE name = :name")
        self._peek = text("SELECT next_at FROM rate_limits WHERE name = :name")

    def _ensure_row(self) -> None:
        try:
            with self.db.write_session() as session:
                session.execute(text("INSERT INTO rate_limits (name, next_at) VALUES (:name, 0)"), {"name": self.name})
        except IntegrityError:
            pass  # another sender created it first

    def reserve(self) -> float:
        """Take the next slot; returns it as Unix time."""
        with self.db.write_connection() as conn:
            slot = conn.execute(self._take, {"name": self.name, "interval": self.interval}).scalar()
        if slot is None:
            self._ensure_row()
            return self.reserve()
        return float(slot)

    def due_in(self) -> float:
        """Seconds until the next slot (without taking it): to wait out a pause before claiming."""
        with self.db.reading() as conn:
            next_at = conn.execute(self._peek, {"name": self.name}).scalar()
        return max(0.0, float(next_at or 0.0) - time.time())

    def pause(self, seconds: float) -> None:
        """Nobody using this database starts a request for `seconds` (SendGrid said 429)."""
        with self.db.write_session() as session:
            session.execute(self._pause, {"name": self.name, "seconds": seconds})


def _greatest(db: Database) -> str:
    return "greatest" if db.dialect == "postgresql" else "max"
