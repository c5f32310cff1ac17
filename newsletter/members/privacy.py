"""GDPR requests: erasure (right to be forgotten) and access (everything held, as JSON).

Erasure deletes the personal data in place and keeps:
  * the subscriber row's id with status "erased" (so counts and audit references stay whole),
  * a salted SHA-256 hash of the address in `erasure_tombstones` (salt: once per database, in `meta`),
    so the address stays suppressed and an import of it is refused,
  * an audit row saying when and who erased, without the address.
Free text that mentions the address (audit reasons anywhere, batch audit reasons, schedule notes)
is rewritten to "[erased]", and so are the member's own audit reasons where they quote the erased
name or organisation (an import's "old → new"). SQLite runs with `secure_delete`, so the old text is
overwritten in the file; PostgreSQL keeps old row versions until VACUUM (README, Subscribers).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from newsletter.errors import NotFound
from newsletter.members.subscribers import (
    audit,
    audit_records,
    is_erased,
    normalise_email,
    subscriber_record,
    tombstone_hash,
    tombstone_salt,
)
from newsletter.models import (
    AuditEntry,
    BatchAudit,
    ErasureTombstone,
    Recipient,
    ScheduledSend,
    SignupRequest,
    Subscriber,
    SubscriberStatus,
)

PERSONAL_COLUMNS = ("email", "email_key", "first_name", "last_name", "organisation", "region",
                    "member_type", "consent_source", "consent_at", "consent_version")


def erase(session: Session, email: str, *, actor: str = "cli",
          reason: str = "GDPR erasure request") -> int:
    """Erase one subscriber's personal data; returns the (anonymous) subscriber id.
    Erasing an already-erased address is a no-op that still succeeds."""
    address = normalise_email(email)
    sub = session.scalar(select(Subscriber).where(Subscriber.email_key == address.key))
    digest = tombstone_hash(tombstone_salt(session), address.key)
    if sub is None:
        if session.get(ErasureTombstone, digest) is not None:
            return -1
        raise NotFound(f"no subscriber {address.email}")
    if session.get(ErasureTombstone, digest) is None:
        session.add(ErasureTombstone(email_hash=digest))
    old_status = sub.status
    personal = [v for v in (sub.first_name, sub.last_name, sub.organisation) if v and len(v.strip()) >= 2]
    _scrub_free_text(session, sub.id, address.email, personal)
    reason = _redact(reason, [address.email], "[erased]")
    for column in PERSONAL_COLUMNS:
        setattr(sub, column, None)
    sub.attributes = {}
    sub.status = SubscriberStatus.ERASED
    # A sign-up waiting for confirmation holds the address too.
    session.execute(delete(SignupRequest).where(SignupRequest.email_key == address.key))
    # Frozen audiences of past or pending sends hold a copy of the address and name.
    session.execute(
        update(Recipient).where(Recipient.subscriber_id == sub.id)
        .values(email="", name=None, first_name="")
    )
    audit(session, sub.id, actor, "erase", old=old_status, new=SubscriberStatus.ERASED, reason=reason)
    session.flush()
    return sub.id


ERASED_TEXT = "[erased]"
# (table, id column, text column) of free text a person or a program may have written an address in
FREE_TEXT = ((AuditEntry, AuditEntry.id, AuditEntry.reason), (BatchAudit, BatchAudit.id, BatchAudit.reason),
             (ScheduledSend, ScheduledSend.id, ScheduledSend.note))


def _redact(text: str, values: list[str], replacement: str) -> str:
    for value in values:
        text = re.sub(re.escape(value), replacement, text, flags=re.IGNORECASE)
    return text


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _scrub_free_text(session: Session, sub_id: int, email: str, personal: list[str]) -> None:
    """Rewrite every stored reason or note that mentions the address; in the member's own audit
    rows, also the names and organisation it quotes."""
    for table, key, column in FREE_TEXT:
        rows = session.execute(select(key, column).where(func.lower(column).like(_like(email), escape="\\"))).all()
        for row_id, text in rows:
            session.execute(update(table).where(key == row_id).values({column: _redact(text, [email], ERASED_TEXT)}))
    if personal:
        own = session.execute(select(AuditEntry.id, AuditEntry.reason).where(
            AuditEntry.subscriber_id == sub_id, AuditEntry.reason.is_not(None))).all()
        for row_id, text in own:
            cleaned = _redact(text, sorted(personal, key=len, reverse=True), ERASED_TEXT)
            if cleaned != text:
                session.execute(update(AuditEntry).where(AuditEntry.id == row_id).values(reason=cleaned))


def access(session: Session, email: str) -> dict[str, Any]:
    """Everything held about an address: the subscriber record (consent included), its audit trail,
    and the editions it was part of. For an erased address: only that it is suppressed."""
    address = normalise_email(email)
    sub = session.scalar(select(Subscriber).where(Subscriber.email_key == address.key))
    if sub is None:
        if is_erased(session, address.key):
            return {
                "requested": address.email,
                "found": False,
                "erased": True,
                "note": "personal data was erased; only a salted hash of the address is kept so it "
                "is never mailed or imported again",
            }
        raise NotFound(f"no subscriber {address.email}")
    sends = session.execute(
        select(Recipient.edition, Recipient.email, Recipient.name)
        .where(Recipient.subscriber_id == sub.id).order_by(Recipient.run_id)
    )
    return {
        "requested": address.email,
        "found": True,
        "erased": False,
        "subscriber": subscriber_record(sub),
        "audit": audit_records(session, sub.id),
        "deliveries": [{"edition": e, "email": m, "name": n} for e, m, n in sends],
    }

