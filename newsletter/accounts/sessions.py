"""Console sessions, kept in the database: the browser holds a random id (256 bits) in a cookie;
the table holds only its SHA-256, the user and the times. A sign-in always starts a new session
(a session id known before sign-in is never promoted: no fixation); sign-out deletes it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from newsletter.db import Database
from newsletter.models import ConsoleSession, ConsoleUser, utcnow

SESSION_IDLE = timedelta(hours=2)  # signed out after this long without a request
SESSION_LIFETIME = timedelta(hours=12)  # and in any case after this long
_TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    email: str
    role: str
    session_hash: str  # names the session without being it (CSRF tokens are bound to it)

    @property
    def actor(self) -> str:
        return f"console:{self.email}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(db: Database, user_id: int, *, replacing: str | None = None) -> str:
    """A new session id for the user (the cookie value). `replacing`: the browser's previous
    session id, if any, which is deleted."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with db.write_session() as session:
        if replacing:
            session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _digest(replacing)))
        session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
        session.add(ConsoleSession(id_hash=_digest(session_id), user_id=user_id, created_at=now, last_seen_at=now,
                                   expires_at=now + SESSION_LIFETIME))
    return session_id


def session_user(db: Database, session_id: str | None) -> SignedIn | None:
    """Who this session id belongs to, while the session is valid and the user is enabled."""
    if not session_id or len(session_id) > 100:
        return None
    key = _digest(session_id)
    now = utcnow()
    with db.session() as session:
        row = session.execute(
            select(ConsoleSession, ConsoleUser).join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .where(ConsoleSession.id_hash == key)).first()
        if row is None:
            return None
        stored, user = row
        if user.disabled or stored.expires_at < now or stored.last_seen_at + SESSION_IDLE < now:
            session.delete(stored)
            return None
        if now - stored.last_seen_at > _TOUCH_EVERY:
            stored.last_seen_at = now
        return SignedIn(user.id, user.email, user.role, key)


def end_session(db: Database, session_id: str | None) -> None:
    if session_id:
        with db.write_session() as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _digest(session_id)))
