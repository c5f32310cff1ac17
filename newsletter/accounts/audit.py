"""The console audit log: every change made through the console or `newsletter users` to
editions (test sends, schedules, pauses), segments and users, naming who made it. Member changes
are in audit_log (actor `admin:<email>`), batch changes in batch_audit (actor `console:<email>`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db import Database
from newsletter.models import ConsoleAudit, utcnow


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    actor: str
    action: str
    target: str
    detail: str


def record(session: Session, actor: str, action: str, target: str, detail: str = "") -> None:
    """Add one entry in the caller's transaction (the change and its entry commit together)."""
    session.add(ConsoleAudit(at=utcnow(), actor=actor[:200], action=action[:40], target=target[:300],
                             detail=detail[:4000]))


def log_action(db: Database, actor: str, action: str, target: str, detail: str = "") -> None:
    """Add one entry in its own transaction (after a change made by another stage's function)."""
    with db.session() as session:
        record(session, actor, action, target, detail)


def list_audit(db: Database, *, limit: int = 200, actor: str | None = None,
               target_prefix: str | None = None) -> list[AuditRecord]:
    """The newest entries first."""
    query = select(ConsoleAudit).order_by(ConsoleAudit.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(ConsoleAudit.actor == actor)
    if target_prefix is not None:
        query = query.where(ConsoleAudit.target.startswith(target_prefix, autoescape=True))
    with db.session() as session:
        return [AuditRecord(r.at, r.actor, r.action, r.target, r.detail) for r in session.scalars(query)]
