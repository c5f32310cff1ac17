"""Signed, URL-safe tokens for member links: unsubscribe, preferences, sign-up and erasure
confirmations, and the hidden field that protects member forms.

    link token      <subscriber id>.<mac>                (unsubscribe and preferences, below)
    expiring token  <id>.<expires unix time>.<mac>       mac = HMAC-SHA256(secret, "<purpose>:<id>:<expires>")
    form token      <issued unix time>.<mac>             mac = HMAC-SHA256(secret, "form:<subject>:<issued>")

A member's two link tokens come from ONE keyed BLAKE2b per member (a send makes millions of them):
    d = BLAKE2b-384(key = HMAC-SHA256(secret, "newsletter member links v2"), "<id>")
the unsubscribe mac is the first 24 bytes of d, the preferences mac the last 24 (32 characters
each). Links made before that (mac = HMAC-SHA256(secret, "<purpose>:<id>"), 43 characters) are
still in members' mailboxes and keep working; any other purpose still uses that HMAC form.

mac is URL-safe base64 without padding. Ids and times are plain ASCII digits with no leading zero,
so one value has exactly one token: `0012`, `١٢` (Arabic-Indic digits) or `²` are refused, never
read as 12. Checking is constant-time and never raises, whatever the input.

Unsubscribe and preferences links carry no date and do not expire: a member may use the link in
an email years old (RFC 8058 and PECR ask for an opt-out that keeps working). They stop working
when the member is erased, or when the secret is rotated and the previous secret's grace period
(`secret_previous_until`) has ended.

The secret is `NEWSLETTER_SECRET`, or the file named by `NEWSLETTER_SECRET_FILE` (mode 0600). It
is never stored in the database, printed or logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.errors import ConfigError
from newsletter.models import Meta, utcnow

LEGACY_META_KEY = "token_secret"  # where versions before 0.2 kept a generated secret, in clear
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
SIGNUP = "signup"
ERASE = "erase"
MIN_SECRET_LENGTH = 32
MAX_ID = 2**63 - 1
FORM_TOKEN_LIFETIME = timedelta(hours=12)

LINK_PURPOSES = (UNSUBSCRIBE, PREFERENCES)  # in the order of their halves of the link digest
_LINK_KEY_LABEL = b"newsletter member links v2"
_LINK_PERSON = b"nl-member-links"  # BLAKE2b personalisation (at most 16 bytes)
_LINK_DIGEST = 48  # bytes: 24 per purpose, 32 URL-safe base64 characters each (no padding)
_LINK_MAC = 32
LINK_MAC_LENGTH = _LINK_MAC  # characters of each purpose's MAC in LinkTokens.macs

_LINK = re.compile(r"(0|[1-9][0-9]{0,18})\.([A-Za-z0-9_-]{43}|[A-Za-z0-9_-]{32})")
_EXPIRING = re.compile(r"(0|[1-9][0-9]{0,18})\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{43})")
_FORM = re.compile(r"([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{43})")
_MAX_TOKEN_LENGTH = 80


def _key(secret: bytes | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _mac(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


_URLSAFE = bytes.maketrans(b"+/", b"-_")


@lru_cache(maxsize=8)
def _link_hash(secret: bytes) -> hashlib.blake2b:
    """The keyed BLAKE2b state of the member links: its key derived from the secret (any length)
    and bound to them. Copied for each member, which is cheaper than keying a new hash each time."""
    key = hmac.new(secret, _LINK_KEY_LABEL, hashlib.sha256).digest()
    return hashlib.blake2b(digest_size=_LINK_DIGEST, key=key, person=_LINK_PERSON)


def _link_digest(keyed: hashlib.blake2b, subscriber_id: int) -> bytes:
    h = keyed.copy()
    h.update(b"%d" % subscriber_id)
    return h.digest()


def _urlsafe(digests: bytes) -> str:
    return binascii.b2a_base64(digests, newline=False).translate(_URLSAFE).decode("ascii")


def _link_macs(keyed: hashlib.blake2b, subscriber_id: int) -> str:
    return _urlsafe(_link_digest(keyed, subscriber_id))


class LinkTokens:
    """A member's unsubscribe and preferences tokens, for the millions of a large send: both from
    one keyed BLAKE2b call (instead of two HMAC-SHA256, each two hashes), with the key derived once
    per secret. Gives exactly make_token's results (tested)."""

    def __init__(self, secret: bytes | str) -> None:
        self._keyed = _link_hash(_key(secret))

    def __call__(self, subscriber_id: int) -> tuple[str, str]:
        """(unsubscribe token, preferences token)."""
        macs = _link_macs(self._keyed, subscriber_id)
        prefix = f"{subscriber_id}."
        return prefix + macs[:_LINK_MAC], prefix + macs[_LINK_MAC:]

    def macs(self, subscriber_ids: Iterable[int]) -> str:
        """The MACs of many members' links in one string: member i's unsubscribe MAC is the 32
        characters from 64 * i, its preferences MAC the 32 after. One base64 pass for them all:
        a 48-byte digest is 64 characters exactly, so the encoding of the digests joined is
        the encodings of each, joined."""
        keyed = self._keyed
        return _urlsafe(b"".join([_link_digest(keyed, subscriber_id) for subscriber_id in subscriber_ids]))


def _link_mac(secret: bytes, subscriber_id: int, purpose: str) -> str:
    half = LINK_PURPOSES.index(purpose)
    return _link_macs(_link_hash(secret), subscriber_id)[half * _LINK_MAC:(half + 1) * _LINK_MAC]


def make_token(secret: bytes | str, subscriber_id: int, purpose: str) -> str:
    """A URL-safe token naming `subscriber_id` for `purpose` (e.g. "unsubscribe"); no expiry."""
    subscriber_id = int(subscriber_id)
    if purpose in LINK_PURPOSES:
        return f"{subscriber_id}.{_link_mac(_key(secret), subscriber_id, purpose)}"
    return f"{subscriber_id}.{_mac(_key(secret), f'{purpose}:{subscriber_id}')}"


def verify_token(secret: bytes | str, token: object, purpose: str) -> int | None:
    """The subscriber id if `token` was made with this secret for this purpose, else None.
    Never raises: any string (or non-string) that is not exactly such a token gives None."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    match = _LINK.fullmatch(token)
    if match is None or int(match[1]) > MAX_ID:
        return None
    if len(match[2]) == _LINK_MAC:
        if purpose not in LINK_PURPOSES:
            return None
        expected = _link_mac(_key(secret), int(match[1]), purpose)
    else:  # the HMAC form of links made before the one-digest form, still valid
        expected = _mac(_key(secret), f"{purpose}:{match[1]}")
    if not _same(expected, match[2]):
        return None
    return int(match[1])


def make_expiring_token(secret: bytes | str, subject_id: int, purpose: str, expires_at: datetime) -> str:
    """A URL-safe token for `subject_id` and `purpose`, valid until `expires_at` (whole seconds)."""
    subject_id, expires = int(subject_id), int(expires_at.timestamp())
    return f"{subject_id}.{expires}.{_mac(_key(secret), f'{purpose}:{subject_id}:{expires}')}"


def verify_expiring_token(secret: bytes | str, token: object, purpose: str, now: datetime) -> int | None:
    """The subject id if `token` is a valid, unexpired token for this purpose, else None."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    match = _EXPIRING.fullmatch(token)
    if match is None or int(match[1]) > MAX_ID or int(match[2]) <= now.timestamp():
        return None
    if not _same(_mac(_key(secret), f"{purpose}:{match[1]}:{match[2]}"), match[3]):
        return None
    return int(match[1])


def make_form_token(secret: bytes | str, subject: str, now: datetime) -> str:
    """The hidden field of a member form: binds a POST to the page (`subject`, e.g. the page's
    own link token) and to a time, so it cannot be made without the secret."""
    issued = int(now.timestamp())
    return f"{issued}.{_mac(_key(secret), f'form:{subject}:{issued}')}"


def verify_form_token(secret: bytes | str, token: object, subject: str, now: datetime) -> bool:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        return False
    match = _FORM.fullmatch(token)
    if match is None:
        return False
    issued = int(match[1])
    if not now.timestamp() - FORM_TOKEN_LIFETIME.total_seconds() <= issued <= now.timestamp() + 60:
        return False
    return _same(_mac(_key(secret), f"form:{subject}:{issued}"), match[2])


# ---------------------------------------------------------------- the secret and its rotation


@dataclass(frozen=True)
class TokenKeys:
    """The current secret (makes and checks tokens) and, during a rotation's grace period, the
    previous one (checks only, until `previous_until`)."""

    current: bytes
    previous: bytes | None = None
    previous_until: datetime | None = None

    def __repr__(self) -> str:  # never show the secrets
        return f"TokenKeys(previous={'set' if self.previous else 'none'}, previous_until={self.previous_until})"

    def checking(self, now: datetime) -> tuple[bytes, ...]:
        """The secrets a token may have been made with at `now`."""
        if self.previous and self.previous_until and now < self.previous_until:
            return (self.current, self.previous)
        return (self.current,)

    def verify(self, token: object, purpose: str, now: datetime | None = None) -> int | None:
        for secret in self.checking(now or utcnow()):
            found = verify_token(secret, token, purpose)
            if found is not None:
                return found
        return None

    def verify_expiring(self, token: object, purpose: str, now: datetime | None = None) -> int | None:
        at = now or utcnow()
        for secret in self.checking(at):
            found = verify_expiring_token(secret, token, purpose, at)
            if found is not None:
                return found
        return None


def read_secret_file(path: Path, setting: str) -> str:
    """The secret in `path` (surrounding whitespace removed); ConfigError when the file is
    missing, not a regular file, or readable or writable by group or others."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: cannot read it: {exc.strerror or exc}",
                          hint="create it with `newsletter secret generate PATH`") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{setting} {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{setting} {path} can be read by other users (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        return path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting} {path}: cannot read it: {exc}") from None


def _configured(value: SecretStr | None, file: Path | None, name: str, settings: Settings) -> str | None:
    if value is not None and value.get_secret_value():
        text = value.get_secret_value().strip()
        where = f"NEWSLETTER_{name.upper()}"
    elif file is not None:
        text = read_secret_file(settings.path(file), f"NEWSLETTER_{name.upper()}_FILE")
        where = f"NEWSLETTER_{name.upper()}_FILE"
    else:
        return None
    if len(text) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{where} is shorter than {MIN_SECRET_LENGTH} characters",
                          hint="make a strong one with `newsletter secret generate PATH`")
    return text


def stored_secret(db: Database) -> str | None:
    """A secret an earlier version generated and kept in clear in the `meta` table, if any."""
    with db.session() as session:
        return session.scalar(select(Meta.value).where(Meta.key == LEGACY_META_KEY))


def token_keys(db: Database, settings: Settings) -> TokenKeys:
    """The configured secrets. ConfigError when none is set, or while the database still holds a
    generated secret in clear (see `move_stored_secret`)."""
    if stored_secret(db) is not None:
        raise ConfigError(
            "this database keeps a generated token secret in clear (meta table): anyone who can read "
            "the database could forge unsubscribe and preferences links",
            hint="run `newsletter secret move-stored PATH`, then set NEWSLETTER_SECRET_FILE=PATH "
                 "(links in emails already sent keep working)",
        )
    current = _configured(settings.secret, settings.secret_file, "secret", settings)
    if current is None:
        raise ConfigError(
            "no token secret: set NEWSLETTER_SECRET_FILE (a file of mode 0600) or NEWSLETTER_SECRET",
            hint="create one with `newsletter secret generate /etc/newsletter/secret` and keep it: "
                 "unsubscribe links in sent emails depend on it",
        )
    previous = _configured(settings.secret_previous, settings.secret_previous_file, "secret_previous", settings)
    if previous is not None and settings.secret_previous_until is None:
        raise ConfigError("NEWSLETTER_SECRET_PREVIOUS is set without NEWSLETTER_SECRET_PREVIOUS_UNTIL",
                          hint="set the date until which links made with the previous secret stay valid, "
                               "e.g. a year after the rotation")
    return TokenKeys(current.encode("utf-8"), previous.encode("utf-8") if previous else None,
                     settings.secret_previous_until)


def token_secret(db: Database, settings: Settings) -> bytes:
    """The current secret: it makes every new token."""
    return token_keys(db, settings).current


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def write_secret_file(path: Path, value: str) -> None:
    """Write a secret to a new file of mode 0600; ConfigError when it exists (a secret is never
    overwritten) or cannot be written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite a secret",
                          hint="choose another path, or remove the old file yourself") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")


def move_stored_secret(db: Database, path: Path) -> bool:
    """Move a secret kept in clear in `meta` by an earlier version to a new 0600 file, and delete
    it from the database. False when the database holds none."""
    value = stored_secret(db)
    if value is None:
        return False
    write_secret_file(path, value)
    with db.write_session() as session:
        row = session.get(Meta, LEGACY_META_KEY)
        if row is not None:
            session.delete(row)
    if db.dialect == "sqlite":  # rewrite the file, so the deleted value leaves its free pages too
        raw = db.engine.raw_connection()  # outside any transaction: the driver's own connection
        try:
            raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
        finally:
            raw.close()
    return True
