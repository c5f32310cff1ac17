"""The web archive: each variant's HTML as it was frozen for sending, shown once its send has
started (a scheduled edition stays private until then), with neutral values in place of the
per-recipient ones: "Hello," for the greeting, "your address" for the address, and the member
links pointing at a page that explains where the real ones are. No personal data, no working token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from newsletter.db import Database
from newsletter.delivery.requests import VariantToSend
from newsletter.models import ArchivedVariant, SendRun

# A name token and the space before it go ("Hello -first_name_html-," → "Hello,").
_NAME = re.compile(r"[ \t]*-first_name(?:_html)?-")
NEUTRAL_ADDRESS = "your address"


@dataclass(frozen=True)
class ArchiveEntry:
    edition: str
    segment: str
    subject: str
    sent_at: datetime


def archive_variants(db: Database, variants: Sequence[VariantToSend]) -> None:
    """Keep each variant's HTML (once per edition and segment; a resumed send keeps the first)."""
    for variant in variants:
        with db.session() as session:
            known = session.scalar(select(ArchivedVariant.id).where(
                ArchivedVariant.edition == variant.edition, ArchivedVariant.segment == variant.segment))
        if known is not None:
            continue
        try:
            with db.write_session() as session:
                session.add(ArchivedVariant(edition=variant.edition, segment=variant.segment, subject=variant.subject,
                                            html=variant.html, sha256=variant.sha256))
        except IntegrityError:
            pass  # another sender archived it at the same moment


def _started() -> object:
    return (SendRun.edition == ArchivedVariant.edition) & (SendRun.segment == ArchivedVariant.segment) & \
        SendRun.started_at.is_not(None)


def archived_editions(db: Database) -> list[ArchiveEntry]:
    """Every variant whose send has started, newest edition first."""
    with db.session() as session:
        rows = session.execute(
            select(ArchivedVariant.edition, ArchivedVariant.segment, ArchivedVariant.subject, SendRun.started_at)
            .join(SendRun, _started())  # type: ignore[arg-type]
            .order_by(ArchivedVariant.edition.desc(), ArchivedVariant.segment)
        ).all()
    return [ArchiveEntry(e, s, subject, started) for e, s, subject, started in rows]


def archived_html(db: Database, edition: str, segment: str, links_url: str) -> str | None:
    """The variant's HTML with neutral values, or None when it is not (yet) in the archive."""
    with db.session() as session:
        html = session.scalar(
            select(ArchivedVariant.html).join(SendRun, _started())  # type: ignore[arg-type]
            .where(ArchivedVariant.edition == edition, ArchivedVariant.segment == segment)
        )
    if html is None:
        return None
    return neutral_html(html, links_url)


def neutral_html(html: str, links_url: str) -> str:
    text = _NAME.sub("", html)
    for token in ("-email_html-", "-email-"):
        text = text.replace(token, NEUTRAL_ADDRESS)
    for token in ("-unsubscribe_url-", "-preferences_url-"):
        text = text.replace(token, links_url)
    return text
