"""Console users: add (with a one-time set-password link), list, disable; set a password from the
link; sign in with a lockout.

- Roles: `comms` (editions, previews, test sends, schedules, reports) and `admin` (everything,
  plus members, segments and users).
- The set-password link carries a random token valid for SETUP_LIFETIME; only its SHA-256 is
  stored, and it works once.
- Sign-in: LOCK_AFTER wrong passwords in a row lock the account for LOCK_FOR (counters in the
  database, so every worker and host shares them); while locked, even the right password is
  refused with the same answer. An unknown address costs the same argon2 check as a wrong password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from newsletter.accounts.audit import record
from newsletter.accounts.passwords import hash_password, needs_rehash, verify_password
from newsletter.db import Database
from newsletter.errors import InputError, NotFound
from newsletter.models import ConsoleSession, ConsoleUser, utcnow

ROLES = ("comms", "admin")
SETUP_LIFETIME = timedelta(hours=72)
LOCK_AFTER = 20
LOCK_FOR = timedelta(minutes=30)
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


class LoginRefused(InputError):
    """Wrong address or password, a locked or disabled account: one message for all of them."""


@dataclass(frozen=True)
class UserView:
    id: int
    email: str
    role: str
    disabled: bool
    has_password: bool
    locked_until: datetime | None
    failed_logins: int
    created_at: datetime
    last_login_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("locked_until", "created_at", "last_login_at"):
            value = data[key]
            data[key] = value.isoformat() if isinstance(value, datetime) else None
        return data


def _view(user: ConsoleUser) -> UserView:
    return UserView(user.id, user.email, user.role, user.disabled, user.password_hash is not None,
                    user.locked_until, user.failed_logins, user.created_at, user.last_login_at)


def _email(raw: str) -> str:
    email = raw.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email) or len(email) > 320:
        raise InputError(f"{raw.strip()!r} is not an email address", hint="e.g. ann@example.org")
    return email


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(user: ConsoleUser, now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    user.setup_token_hash = _digest(token)
    user.setup_expires_at = now + SETUP_LIFETIME
    return token


def _find(session: Session, email: str) -> ConsoleUser:
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.email == _email(email)))
    if user is None:
        raise NotFound(f"no console user {email.strip()}", hint="see `newsletter users list`")
    return user


def add_user(db: Database, email: str, role: str, *, actor: str) -> tuple[UserView, str]:
    """A new user without a password; returns it and the one-time set-password token."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}", hint="use comms or admin")
    address = _email(email)
    now = utcnow()
    with db.write_session() as session:
        if session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == address)) is not None:
            raise InputError(f"{address} is already a console user",
                             hint="`newsletter users reset EMAIL` gives a new set-password link")
        user = ConsoleUser(email=address, role=role, created_at=now)
        token = _new_token(user, now)
        session.add(user)
        session.flush()
        record(session, actor, "user-add", f"user {address}", f"role {role}")
        return _view(user), token


def new_setup_link(db: Database, email: str, *, actor: str) -> str:
    """A fresh one-time set-password token (the old password and links stop working, sessions end)."""
    now = utcnow()
    with db.write_session() as session:
        user = _find(session, email)
        token = _new_token(user, now)
        user.password_hash = None
        user.failed_logins, user.locked_until = 0, None
        session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
        record(session, actor, "user-reset", f"user {user.email}", "new set-password link; sessions ended")
        return token


def setup_user(db: Database, token: str) -> UserView | None:
    """The user a set-password token belongs to, while it is valid; None otherwise."""
    with db.session() as session:
        user = session.scalar(select(ConsoleUser).where(ConsoleUser.setup_token_hash == _digest(token)))
        if user is None or user.disabled or user.setup_expires_at is None or user.setup_expires_at < utcnow():
            return None
        return _view(user)


def _check_password(password: str, email: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password needs at least {MIN_PASSWORD} characters",
                         hint="a few unrelated words make a long password that is easy to remember")
    if len(password) > MAX_PASSWORD:
        raise InputError(f"the password may have at most {MAX_PASSWORD} characters")
    if password.strip().lower() == email.lower():
        raise InputError("the password cannot be your email address")


def set_password(db: Database, token: str, password: str) -> UserView:
    """Use a set-password token once: store the argon2 hash of the new password."""
    with db.write_session() as session:
        user = session.scalar(select(ConsoleUser).where(ConsoleUser.setup_token_hash == _digest(token))
                              .with_for_update())
        if user is None or user.disabled or user.setup_expires_at is None or user.setup_expires_at < utcnow():
            raise NotFound("this set-password link is not valid (used, expired or replaced)",
                           hint="ask an admin for a new one: newsletter users reset EMAIL")
        _check_password(password, user.email)
        user.password_hash = hash_password(password)
        user.setup_token_hash, user.setup_expires_at = None, None
        user.failed_logins, user.locked_until = 0, None
        record(session, f"console:{user.email}", "password-set", f"user {user.email}")
        return _view(user)


def authenticate(db: Database, email: str, password: str, *, now: datetime | None = None) -> UserView:
    """The user, when the address and password are right and the account is usable; else
    LoginRefused (the same message whatever the reason). Wrong passwords are counted."""
    moment = now or utcnow()
    refused = LoginRefused("wrong email address or password, or the account is locked",
                           hint=f"after {LOCK_AFTER} wrong passwords an account is locked for "
                                f"{int(LOCK_FOR.total_seconds() // 60)} minutes")
    try:
        address = _email(email)
    except InputError:
        verify_password(None, password)
        raise refused from None
    with db.session() as session:
        user = session.scalar(select(ConsoleUser).where(ConsoleUser.email == address))
        stored = user.password_hash if user is not None else None
    ok = verify_password(stored, password)  # slow: outside any transaction
    if user is None:
        raise refused
    with db.write_session() as session:
        current = session.get(ConsoleUser, user.id, with_for_update=True)
        usable = current is not None and not current.disabled and not (
            current.locked_until is not None and current.locked_until > moment)
        if current is not None and usable and not ok:
            failures = current.failed_logins + 1
            locked = moment + LOCK_FOR if failures >= LOCK_AFTER else None
            session.execute(update(ConsoleUser).where(ConsoleUser.id == current.id).values(
                failed_logins=0 if locked else failures, locked_until=locked))
            if locked:
                record(session, "console", "user-locked", f"user {current.email}",
                       f"{LOCK_AFTER} wrong passwords in a row; locked until {locked:%Y-%m-%d %H:%M} UTC")
        if current is None or not usable or not ok:
            view = None
        else:
            current.failed_logins, current.locked_until, current.last_login_at = 0, None, moment
            if current.password_hash and needs_rehash(current.password_hash):
                current.password_hash = hash_password(password)
            view = _view(current)
    if view is None:
        raise refused
    return view


def get_user(db: Database, user_id: int) -> UserView | None:
    with db.session() as session:
        user = session.get(ConsoleUser, user_id)
        return _view(user) if user is not None else None


def list_users(db: Database) -> list[UserView]:
    with db.session() as session:
        return [_view(u) for u in session.scalars(select(ConsoleUser).order_by(ConsoleUser.email))]


def disable_user(db: Database, email: str, *, actor: str) -> UserView:
    """The user can no longer sign in; their sessions end at once."""
    with db.write_session() as session:
        user = _find(session, email)
        user.disabled = True
        user.setup_token_hash, user.setup_expires_at = None, None
        session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
        record(session, actor, "user-disable", f"user {user.email}")
        return _view(user)
