"""What the scheduler tells the comms team (through newsletter.delivery.notify: once per reason
and send): a send at risk (its inputs changed since it was approved), and each send's outcome:
stale, missed, failed, uncertain, and a short "sent" summary."""

from __future__ import annotations

import logging

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery import Notice, NoticeResult, notify
from newsletter.schedule.planning import ScheduledSendInfo
from newsletter.schedule.risk import Risk

log = logging.getLogger(__name__)


def _data(send: ScheduledSendInfo) -> dict[str, str]:
    return {"edition": send.edition, "segment": send.segment, "send_at_utc": send.send_at.isoformat(),
            "send_at_local": send.local_time}


def at_risk_notice(send: ScheduledSendInfo, risk: Risk) -> Notice:
    return Notice(
        kind="at-risk", about=send.key, reason=risk.reason,
        subject=f"At risk: {send.key} at {send.local_time}: {risk.reason}",
        paragraphs=(
            f"The send of edition {send.edition} to {send.segment}, scheduled for {send.local_time}, is at risk: "
            f"{risk.reason} since it was approved.",
            "At its time the scheduler will send nothing rather than a version nobody approved.",
            f"To do: {risk.fix}.",
        ),
        data={**_data(send), "fix": risk.fix},
    )


STATE_WORDS = {
    "stale": "Not sent (stale)",
    "missed": "Not sent (missed)",
    "failed": "Failed",
}
NEXT_STEP = {
    "missed": "To send it now or later: `newsletter schedule move {edition} --segment {segment} --at TIME`.",
    "failed": "Fix the cause, then `newsletter schedule move {edition} --segment {segment} --at TIME`: "
              "delivery resumes and batches already accepted are not sent again.",
}
# A send that came due while the complaint guard held its edition: a move alone would fail again.
PAUSED_NEXT_STEP = ("Look at the complaints (`newsletter sends show {edition}`); to go on, first "
                    "`newsletter sends resume {edition}`, then `newsletter schedule move {edition} --segment {segment} "
                    "--at TIME`: delivery resumes and batches already accepted are not sent again.")


def outcome_notice(send: ScheduledSendInfo, state: str, note: str | None, *, paused: bool = False) -> Notice:
    """stale, missed or failed: what happened (the row's note) and what to run (`paused`: it failed
    because the complaint guard paused its edition, so the edition is resumed first)."""
    reason = note or state
    paragraphs = [f"The send of edition {send.edition} to {send.segment}, scheduled for {send.local_time}: "
                  f"{state}.", reason]
    step = PAUSED_NEXT_STEP if paused and state == "failed" else NEXT_STEP.get(state)
    if step:
        paragraphs.append(step.format(edition=send.edition, segment=send.segment))
    return Notice(kind=state, about=send.key, reason=reason,
                  subject=f"{STATE_WORDS.get(state, state)}: {send.key} ({send.local_time})",
                  paragraphs=tuple(paragraphs), data=_data(send))


def uncertain_notice(send: ScheduledSendInfo, uncertain: int) -> Notice:
    reason = f"{uncertain:,} recipient(s) uncertain"
    return Notice(
        kind="uncertain", about=send.key, reason=reason,
        subject=f"Uncertain: {send.key}: {reason}",
        paragraphs=(
            f"The send of edition {send.edition} to {send.segment} finished, but {uncertain:,} recipient(s) are in "
            "batches that may or may not have reached SendGrid (no complete answer came).",
            f"See `newsletter sends show {send.edition}` and SendGrid's activity feed; then settle each batch with "
            "`newsletter sends resolve RUN BATCH --delivered|--resend --reason ...`.",
        ),
        data={**_data(send), "uncertain": str(uncertain)},
    )


def sent_notice(send: ScheduledSendInfo, note: str | None) -> Notice:
    summary = note or "delivery finished"
    return Notice(
        kind="sent", about=send.key, reason="sent",
        subject=f"Sent: {send.key} ({summary})",
        paragraphs=(f"Edition {send.edition} went to {send.segment} at {send.local_time}: {summary}.",
                    f"Details: `newsletter sends show {send.edition}`."),
        data={**_data(send), "summary": summary},
    )


def tell(db: Database, settings: Settings, notice: Notice) -> NoticeResult | None:
    """notify(), never raising: a notice that cannot be recorded must not stop a send."""
    try:
        return notify(db, settings, notice)
    except Exception:
        log.exception("could not record the notice %r", notice.subject)
        return None
