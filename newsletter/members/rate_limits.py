"""Rate limits kept in the database, so every worker process and host behind one PostgreSQL (or
one SQLite file) shares them: a fixed-window counter per key, updated in one atomic upsert.

Keys are salted hashes (an IP address or an email address is never stored in clear here), and
rows whose window ended long ago are deleted as new hits come in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.members.subscribers import tombstone_salt
from newsletter.models import LimitCounter, UTCDateTime, utcnow

FORGET_AFTER = timedelta(days=2)  # longer than any window used


def limit_key(session: Session, kind: str, value: str) -> str:
    """The stored key for `value` (e.g. an IP address) under `kind` (e.g. "signup-ip")."""
    return hashlib.sha256(f"{tombstone_salt(session)}:{kind}:{value}".encode()).hexdigest()


def hit(session: Session, key: str, *, limit: int, window: timedelta, now: datetime | None = None) -> bool:
    """Count one hit on `key`; True while the hits in the current window are at most `limit`.
    Atomic on both backends (INSERT … ON CONFLICT DO UPDATE … RETURNING)."""
    moment = now or utcnow()
    cutoff = moment - window
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    expired = LimitCounter.window_start <= literal(cutoff, UTCDateTime())
    stmt = insert(LimitCounter).values(key=key, window_start=moment, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[LimitCounter.key],
        set_={"window_start": case((expired, literal(moment, UTCDateTime())), else_=LimitCounter.window_start),
              "count": case((expired, 1), else_=LimitCounter.count + 1)},
    ).returning(LimitCounter.count)
    count = int(session.execute(stmt).scalar_one())
    session.execute(delete(LimitCounter).where(LimitCounter.window_start < moment - FORGET_AFTER))
    return count <= limit
