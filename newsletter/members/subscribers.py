"""The subscriber store: address normalisation, admin actions with an audit trail, export.

Functions take an open SQLAlchemy `Session` (from `Database.write_session()` / `.session()`), so the
CLI and a future web side share them and choose the transaction.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.errors import InputError, NotFound
from newsletter.members.provenance import audit_reason, field_changes, with_sources
from newsletter.models import (
    AuditEntry,
    Batch,
    BatchStatus,
    ErasureTombstone,
    Meta,
    Recipient,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.regions import REGION_SLUGS, normalise_region

SALT_KEY = "tombstone_salt"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# C0 controls except tab / line feed / carriage return, DEL, and C1 controls (U+0080-U+009F):
# NUL cannot be stored in PostgreSQL text, and escape sequences would drive a terminal. Also the
# invisible format characters that can disguise a name: bidi marks, embeddings, overrides and
# isolates (which can make "Ann" display as anything), zero-width space, word joiner and friends,
# and the byte-order mark. Zero-width (non-)joiners U+200C/U+200D are kept: Persian and Indic
# names, and emoji, need them.
_INVISIBLE = "\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
CONTROL_CHARS = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_INVISIBLE}]")
_ANY_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]+")
_LINE_BREAKS = re.compile("[\t\r\n]+")
MAX_LENGTHS = {"first_name": 200, "last_name": 200, "organisation": 300, "member_type": 60,
               "consent_source": 200, "consent_version": 40}
EXPORT_FIELDS = ("email", "first_name", "last_name", "organisation", "region", "member_type", "status",
                 "consent_source", "consent_at", "consent_version", "joined_at", "attributes")


class InvalidEmail(InputError):
    """An address that is empty or not a valid email address (message says why)."""


@dataclass(frozen=True)
class Address:
    email: str  # trimmed, domain lower-cased (as stored and sent to)
    key: str  # the whole address lower-cased: unique per subscriber


def normalise_email(raw: str | None) -> Address:
    """Trim, check syntax (no DNS), lower-case the domain. Raises InvalidEmail with the reason."""
    text = (raw or "").strip()
    if not text:
        raise InvalidEmail("missing email address")
    if not text.isprintable() and _ANY_CONTROL.search(text):
        raise InvalidEmail("invalid email address: it contains control characters")
    local, at, domain = text.partition("@")
    if at and _PLAIN_LOCAL.match(local) and len(local) <= 64 and len(text) <= 254 and domain.isascii():
        # Fast path for the common case (an ASCII dot-atom local part): only the domain needs
        # email-validator's checks, and an import sees the same few domains again and again.
        ok, checked_domain = _check_domain(domain)
        if not ok:
            raise InvalidEmail(f"invalid email address: {checked_domain}")
        email = f"{local}@{checked_domain}"
        return Address(email, email.lower())
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"invalid email address: {exc}") from None
    if checked.ascii_email is None:
        # SendGrid does not deliver to SMTPUTF8 mailboxes: such a member would silently get nothing.
        raise InvalidEmail(
            f"email address {checked.local_part}@… has non-ASCII characters before the @, which the mail "
            "service cannot deliver to; ask the member for another address")
    # International domains are kept in their ASCII (IDNA) form, the form mail servers use.
    email = f"{checked.local_part}@{checked.ascii_domain.lower()}"
    return Address(email, email.lower())


_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


@lru_cache(maxsize=8192)
def _check_domain(domain: str) -> tuple[bool, str]:
    """(True, lower-cased domain) or (False, email-validator's reason), checked via a stand-in
    local part (the domain's validity does not depend on it)."""
    try:
        checked = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        return False, str(exc)
    return True, checked.ascii_domain.lower()  # an "xn--" domain stays in its ASCII form


@lru_cache(maxsize=4096)
def _region(text: str) -> str | None:
    return normalise_region(text)


@lru_cache(maxsize=4096)
def member_type_value(raw: str | None) -> str | None:
    """Member types are compared case-insensitively: stored trimmed and lower-cased."""
    text = " ".join((raw or "").split()).lower()
    return text or None


def remove_controls(text: str) -> str:
    """`text` without control characters (tab, line feed and carriage return are kept)."""
    return CONTROL_CHARS.sub("", text) if CONTROL_CHARS.search(text) else text


def display_text(value: Any) -> str:
    """For printing to a terminal: every control character (tab and line breaks too) as a space."""
    text = "" if value is None else str(value)
    return _ANY_CONTROL.sub(" ", text) if _ANY_CONTROL.search(text) else text


def escape_cell(value: Any) -> str:
    """A CSV cell that spreadsheets will not run as a formula (OWASP: prefix with a quote)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


# ---------------------------------------------------------------- erasure tombstones


def tombstone_salt(session: Session) -> str:
    """This database's salt for tombstone hashes, generated on first use and kept in `meta`."""
    salt = session.get(Meta, SALT_KEY)
    if salt is not None:
        return salt.value
    try:
        with session.begin_nested():
            session.add(Meta(key=SALT_KEY, value=secrets.token_hex(32)))
    except IntegrityError:  # another process created it first
        pass
    return session.get(Meta, SALT_KEY).value  # type: ignore[union-attr]


def tombstone_hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


def is_erased(session: Session, key: str) -> bool:
    return session.get(ErasureTombstone, tombstone_hash(tombstone_salt(session), key)) is not None


# ---------------------------------------------------------------- admin actions


@dataclass(frozen=True)
class SubscriberDetails:
    """Details given by an admin or an import row; None means "not given" (keeps what is stored)."""

    first_name: str | None = None
    last_name: str | None = None
    organisation: str | None = None
    region: str | None = None
    member_type: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def checked(self) -> SubscriberDetails:
        """Trimmed and validated copy: control characters removed (tabs and line breaks in names
        become spaces), region canonical, member type lower-cased, lengths ok."""
        return SubscriberDetails.checked_from(self.first_name, self.last_name, self.organisation, self.region,
                                              self.member_type, self.attributes)

    @staticmethod
    def checked_from(first_name: str | None, last_name: str | None, organisation: str | None,
                     region: str | None, member_type: str | None,
                     attributes: Mapping[str, str]) -> SubscriberDetails:
        """`SubscriberDetails(...).checked()` without the unchecked copy (an import does this per row)."""
        region_slug = None
        region_text = _clean(region)
        if region_text is not None:
            region_slug = _region(region_text)
            if region_slug is None:
                raise InputError(f"unknown region {region_text!r}",
                                 hint=f"use one of: {', '.join(REGION_SLUGS)} (or an alias)")
        first, last, org = _clean(first_name), _clean(last_name), _clean(organisation)
        mtype = member_type_value(_clean(member_type))
        for name, value in (("first_name", first), ("last_name", last), ("organisation", org),
                            ("member_type", mtype)):
            if value is not None and len(value) > MAX_LENGTHS[name]:
                raise InputError(f"{name.replace('_', ' ')} is longer than {MAX_LENGTHS[name]} characters")
        attrs: dict[str, str] = {}
        if attributes:
            cleaned = {remove_controls(str(k)).strip(): remove_controls(str(v)).strip()
                       for k, v in attributes.items()}
            attrs = {k: v for k, v in cleaned.items() if v}
        return SubscriberDetails(first, last, org, region_slug, mtype, attrs)

    def controls_removed(self) -> list[str]:
        """Names of the given values that contain control characters (`checked` removes them)."""
        names = [n for n in ("first_name", "last_name", "organisation", "region", "member_type")
                 if CONTROL_CHARS.search(getattr(self, n) or "")]
        names += [f"attributes.{remove_controls(str(k))}" for k, v in self.attributes.items()
                  if CONTROL_CHARS.search(f"{k}{v}")]
        return names

    def changes(self, sub: Any) -> dict[str, Any]:
        """Column -> new value for what differs from `sub` (a Subscriber or a row with its
        columns), for the values given only."""
        out: dict[str, Any] = {}
        for name in ("first_name", "last_name", "organisation", "region", "member_type"):
            value = getattr(self, name)
            if value is not None and getattr(sub, name) != value:
                out[name] = value
        if self.attributes:
            merged = {**(sub.attributes or {}), **self.attributes}
            if merged != (sub.attributes or {}):
                out["attributes"] = merged
        return out


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    if value.isprintable():  # no control or invisible format characters: the common case, quickly
        return value.strip() or None
    text = _LINE_BREAKS.sub(" ", remove_controls(value)).strip()
    return text or None


def clean_value(value: str | None) -> str | None:
    """A free-text value (consent source or version) as stored: one line, no control characters."""
    return _clean(value)


def audit(session: Session, sub_id: int | None, actor: str, action: str, *, old: str | None = None,
          new: str | None = None, reason: str | None = None) -> None:
    session.add(AuditEntry(subscriber_id=sub_id, actor=actor, action=action, old_status=old,
                           new_status=new, reason=reason))


def find_subscriber(session: Session, email: str) -> Subscriber:
    address = normalise_email(email)
    sub = session.scalar(select(Subscriber).where(Subscriber.email_key == address.key))
    if sub is None:
        hint = "this address was erased (GDPR)" if is_erased(session, address.key) else None
        raise NotFound(f"no subscriber {address.email}", hint=hint)
    return sub


def add_subscriber(session: Session, email: str, details: SubscriberDetails, *, actor: str = "cli",
                   consent_source: str | None = None, consent_version: str | None = None,
                   joined_at: datetime | None = None) -> Subscriber:
    address = normalise_email(email)
    details = details.checked()
    if session.scalar(select(Subscriber.id).where(Subscriber.email_key == address.key)) is not None:
        raise InputError(f"{address.email} is already a subscriber",
                         hint="use `subscribers update` to change details")
    if is_erased(session, address.key):
        raise InputError(f"{address.email} was erased at the member's request and cannot be re-added")
    now = utcnow()
    sub = Subscriber(
        email=address.email, email_key=address.key, first_name=details.first_name,
        last_name=details.last_name, organisation=details.organisation, region=details.region,
        member_type=details.member_type, attributes=dict(details.attributes),
        status=SubscriberStatus.ACTIVE, consent_source=clean_value(consent_source) or actor,
        consent_at=now, consent_version=clean_value(consent_version), joined_at=joined_at or now,
    )
    session.add(sub)
    session.flush()
    audit(session, sub.id, actor, "create", new=SubscriberStatus.ACTIVE, reason="added")
    return sub


def update_subscriber(session: Session, email: str, details: SubscriberDetails, *,
                      actor: str = "cli") -> dict[str, Any]:
    """Change details (never the status), remembering that `actor` (a person) set them, so a later
    import keeps them. Returns the columns changed."""
    sub = find_subscriber(session, email)
    changes = details.checked().changes(sub)
    fields = field_changes(changes, {name: getattr(sub, name) for name in changes})
    for name, value in changes.items():
        setattr(sub, name, value)
    if fields:
        sub.field_sources = with_sources(sub.field_sources or {}, fields, actor)
        audit(session, sub.id, actor, "update", reason=audit_reason(fields))
    return changes


def change_email(session: Session, old: str, new: str, *, actor: str = "cli") -> Subscriber:
    """Give a member a new address, keeping their id, history and consent. Batches of sends not yet
    delivered go to the new address. Refused when the new address belongs to another member or
    was erased. The audit row names no address (an erasure must leave none behind)."""
    sub = find_subscriber(session, old)
    address = normalise_email(new)
    if address.key == sub.email_key:
        if address.email == sub.email:
            raise InputError(f"{sub.email} already has that address")
    elif session.scalar(select(Subscriber.id).where(Subscriber.email_key == address.key)) is not None:
        raise InputError(f"{address.email} is already another member's address",
                         hint="erase or merge that member first")
    elif is_erased(session, address.key):
        raise InputError(f"{address.email} was erased at the member's request and cannot be used again")
    sub.email, sub.email_key = address.email, address.key
    sub.field_sources = {**(sub.field_sources or {}), "email": actor}
    undelivered = select(Batch.id).where(Batch.status.in_([BatchStatus.PENDING.value, BatchStatus.FAILED.value]))
    session.execute(update(Recipient).where(Recipient.subscriber_id == sub.id, Recipient.batch_id.in_(undelivered))
                    .values(email=address.email))
    audit(session, sub.id, actor, "email", reason="email address changed")
    return sub


@dataclass(frozen=True)
class SubscriberPage:
    """One page of a member search: the matching members' records and how many match in all."""

    total: int
    offset: int
    records: tuple[dict[str, Any], ...]


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_subscribers(session: Session, *, text: str | None = None, region: str | None = None,
                       status: str | None = None, limit: int = 50, offset: int = 0) -> SubscriberPage:
    """Members whose address, name or organisation contains `text` (any case), in a region and with
    a status, ordered by address. Erased members are listed only when asked for by status."""
    query = select(Subscriber)
    if text and text.strip():
        pattern = _like(" ".join(text.lower().split()))
        full_name = func.lower(func.coalesce(Subscriber.first_name, "") + " " + func.coalesce(Subscriber.last_name, ""))
        query = query.where(or_(*(column.like(pattern, escape="\\") for column in (
            Subscriber.email_key, full_name, func.lower(func.coalesce(Subscriber.organisation, ""))))))
    if region:
        slug = _region(region)
        if slug is None:
            raise InputError(f"unknown region {region!r}", hint=f"use one of: {', '.join(REGION_SLUGS)}")
        query = query.where(Subscriber.region == slug)
    if status:
        if status not in {s.value for s in SubscriberStatus}:
            raise InputError(f"unknown status {status!r}",
                             hint=f"use one of: {', '.join(s.value for s in SubscriberStatus)}")
        query = query.where(Subscriber.status == status)
    else:
        query = query.where(Subscriber.status != SubscriberStatus.ERASED)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Subscriber.email_key, Subscriber.id).limit(limit).offset(offset))
    return SubscriberPage(int(total), offset, tuple(subscriber_record(s) for s in rows))


def set_status(session: Session, sub: Subscriber, status: SubscriberStatus, *, actor: str,
               reason: str) -> bool:
    """Change a subscriber's status with an audit row; False when it already had that status."""
    if sub.status == status:
        return False
    if sub.status == SubscriberStatus.ERASED:
        raise InputError("an erased subscriber cannot change status")
    audit(session, sub.id, actor, "status", old=sub.status, new=status, reason=reason)
    sub.status = status
    return True


def stop_active(session: Session, changes: Mapping[int, tuple[SubscriberStatus, str]], *, actor: str) -> int:
    """Set-based `set_status` for many members at once (provider events): each id's new status and
    reason, applied only to members still active (never reactivating, never overriding an earlier
    stop), with one audit row each. Two statements per 1,000 members. Returns how many changed."""
    ids = sorted(changes)
    changed = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        active = list(session.scalars(select(Subscriber.id).where(
            Subscriber.id.in_(chunk), Subscriber.status == SubscriberStatus.ACTIVE.value).with_for_update()))
        if not active:
            continue
        now = utcnow()
        session.execute(update(Subscriber.__table__).where(Subscriber.__table__.c.id == bindparam("sid")).values(
            status=bindparam("new_status"), updated_at=now),
            [{"sid": sid, "new_status": changes[sid][0].value} for sid in active])
        session.execute(insert(AuditEntry.__table__), [
            {"at": now, "subscriber_id": sid, "actor": actor, "action": "status", "old_status": "active",
             "new_status": changes[sid][0].value, "reason": changes[sid][1]} for sid in active])
        changed += len(active)
    return changed


def unsubscribe(session: Session, email: str, *, actor: str = "cli",
                reason: str = "unsubscribed by an administrator") -> bool:
    return set_status(session, find_subscriber(session, email), SubscriberStatus.UNSUBSCRIBED,
                      actor=actor, reason=reason)


def resubscribe(session: Session, email: str, *, actor: str = "cli", reason: str = "resubscribed",
                consent_source: str | None = None, consent_version: str | None = None) -> bool:
    """Make a subscriber active again with fresh consent (a deliberate act, never an import)."""
    sub = find_subscriber(session, email)
    changed = set_status(session, sub, SubscriberStatus.ACTIVE, actor=actor, reason=reason)
    if changed:
        sub.consent_source = clean_value(consent_source) or actor
        sub.consent_at = utcnow()
        sub.consent_version = clean_value(consent_version) or sub.consent_version
    return changed


def subscriber_record(sub: Subscriber) -> dict[str, Any]:
    """Everything stored in the subscriber row, JSON-ready."""
    return {
        "id": sub.id, "email": sub.email, "first_name": sub.first_name, "last_name": sub.last_name,
        "organisation": sub.organisation, "region": sub.region, "member_type": sub.member_type,
        "attributes": dict(sub.attributes or {}), "status": sub.status,
        "consent": {"source": sub.consent_source, "at": _iso(sub.consent_at),
                    "version": sub.consent_version},
        "joined_at": _iso(sub.joined_at), "paused_until": _iso(sub.paused_until), "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
    }


def audit_records(session: Session, sub_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(select(AuditEntry).where(AuditEntry.subscriber_id == sub_id)
                           .order_by(AuditEntry.id))
    return [{"at": _iso(a.at), "actor": a.actor, "action": a.action, "old_status": a.old_status,
             "new_status": a.new_status, "reason": a.reason} for a in rows]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# ---------------------------------------------------------------- export


def iter_export(session: Session, where: ColumnElement[bool] | None = None) -> Iterator[dict[str, Any]]:
    """Subscribers (never erased ones) as flat dicts, streamed from the database in pages."""
    query = select(Subscriber).where(Subscriber.status != SubscriberStatus.ERASED)
    if where is not None:
        query = query.where(where)
    query = query.order_by(Subscriber.id).execution_options(yield_per=1000)
    for sub in session.scalars(query):
        yield {
            "email": sub.email, "first_name": sub.first_name, "last_name": sub.last_name,
            "organisation": sub.organisation, "region": sub.region, "member_type": sub.member_type,
            "status": sub.status, "consent_source": sub.consent_source,
            "consent_at": _iso(sub.consent_at), "consent_version": sub.consent_version,
            "joined_at": _iso(sub.joined_at), "attributes": dict(sub.attributes or {}),
        }
        session.expunge(sub)


def open_output(path: Path, encoding: str = "utf-8") -> IO[str]:
    """`path` opened for writing text, or InputError naming it and why it cannot be written."""
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist",
                         hint="create the directory or choose another path")
    try:
        return path.open("w", encoding=encoding, newline="")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """CSV with formula-looking cells escaped; attributes as a JSON cell. Returns rows written."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for row in rows:
        cells = [json.dumps(v, ensure_ascii=False, sort_keys=True) if k == "attributes" and v else
                 ("" if k == "attributes" else v) for k, v in ((k, row.get(k)) for k in EXPORT_FIELDS)]
        writer.writerow([escape_cell(c) for c in cells])
        count += 1
    return count


def write_json(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """A JSON array written row by row (constant memory). Returns rows written."""
    out.write("[")
    count = 0
    for row in rows:
        out.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
