"""Send an edition: load the build, freeze the audience, deliver the batches, report.

    send_edition(db, settings, build_dir, transport=make_transport(settings))

Re-running is always safe: the audience is frozen once per (edition, segment); accepted batches
are never sent again; pending and retryable ones go; uncertain ones (the request may have reached
SendGrid) only with resend_uncertain=True.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from newsletter.config import Settings
from newsletter.db import Database, bulk_rows
from newsletter.delivery.archive import archive_variants
from newsletter.delivery.audience import (
    Assignment,
    AudiencePlan,
    Census,
    SegmentPlan,
    check_frozen_builds,
    count_audiences,
    freeze_segment,
    frozen_runs,
    plan_audience,
)
from newsletter.delivery.batches import Sender, SendPolicy, prepare_runs
from newsletter.delivery.complaints import edition_pause
from newsletter.delivery.journal import journal_dir, replay_journals
from newsletter.delivery.requests import MAX_PERSONALIZATIONS, MailBuilder, MessageOptions, VariantToSend
from newsletter.delivery.tokens import token_secret
from newsletter.delivery.transports import Transport, make_transport
from newsletter.errors import DeliveryError, InputError, NotFound
from newsletter.members import SegmentSet, coverage, edition_order, load_segment_set, resolve_segments
from newsletter.models import Batch, BatchStatus, RunStatus, SendRun, utcnow
from newsletter.render import load_build, unsubscribe_mailbox

__all__ = [
    "AudiencePlan",
    "EditionPaused",
    "ProgressSink",
    "RunReport",
    "SegmentPlan",
    "SendInterrupted",
    "edition_started",
    "list_runs",
    "load_variants",
    "make_transport",
    "policy_from_settings",
    "run_report",
    "send_edition",
    "what_is_left",
]


class ProgressSink(Protocol):
    def start(self, total_recipients: int, total_batches: int, done_recipients: int, done_batches: int) -> None: ...
    def advance(self, recipients: int, batches: int) -> None: ...
    def waiting(self, seconds: float, message: str) -> None: ...


@dataclass(frozen=True)
class RunReport:
    run_id: int | None
    edition: str
    segment: str
    subject: str
    status: str
    transport: str | None
    audience: int
    excluded: dict[str, int]
    batches: int = 0
    batches_done: int = 0  # accepted, failed or uncertain
    accepted: int = 0  # recipients, by batch state
    failed: int = 0
    failed_final: int = 0  # of failed: refused by the provider (4xx), not retried by sending again
    uncertain: int = 0
    pending: int = 0
    in_flight: int = 0
    sent_now: int = 0  # recipients accepted by this call
    started_at: datetime | None = None
    finished_at: datetime | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)  # failed / uncertain batches, why

    @property
    def all_accepted(self) -> bool:
        """Every batch of the run was accepted: nothing failed, uncertain or left to send."""
        return self.batches > 0 and self.failed == self.uncertain == self.pending == self.in_flight == 0

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 3)
        return None

    def as_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["problems"] = list(self.problems)
        data["duration_seconds"] = self.duration_seconds
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


class EditionPaused(DeliveryError):
    """The edition is paused (complaint guard): nothing more of it is sent until a person resumes it."""

    def __init__(self, edition: str, reason: str, reports: list[RunReport] | None = None) -> None:
        super().__init__(f"edition {edition} is paused, nothing more of it is sent: {reason}",
                         hint=f"look at `newsletter sends show {edition}`; to go on: "
                              f"newsletter sends resume {edition}, then send again")
        self.edition = edition
        self.reports = reports or []


class SendInterrupted(DeliveryError):
    """Ctrl-C: requests in flight were finished and recorded; `send` again resumes."""

    def __init__(self, reports: list[RunReport]) -> None:
        super().__init__("interrupted; run the same send again to resume", hint=None)
        self.reports = reports


def policy_from_settings(settings: Settings) -> SendPolicy:
    return SendPolicy(
        concurrency=settings.concurrency, max_requests_per_second=settings.max_requests_per_second,
        max_retries=settings.max_retries, backoff_base=settings.retry_backoff_seconds,
        backoff_max=settings.retry_backoff_max_seconds, lease_seconds=settings.request_timeout * 2 + 30,
    )


def load_variants(build_dir: Path) -> tuple[str, list[VariantToSend]]:
    """The edition id and its variants, from the build record (load_build re-hashes every file and
    refuses a build that failed a gate); subject and sender are the ones the build recorded."""

    build = load_build(Path(build_dir))
    return build.edition_id, [
        VariantToSend(
            edition=build.edition_id, segment=v.segment, subject=v.subject, html=build.html(v.segment),
            text=build.text(v.segment), sha256=v.sha256, from_email=v.from_email, from_name=v.from_name,
            list_id=v.list_id, unsubscribe_mailbox=unsubscribe_mailbox(v),
        )
        for v in build.variants
    ]


def _segment_rules(db: Database, settings: Settings, edition_segments: Sequence[str]) -> SegmentSet:
    segment_set = load_segment_set(db, settings.project_dir)
    missing = [s for s in edition_segments if s not in segment_set]
    if missing:
        raise InputError(f"segment {missing[0]!r} is not defined (see `newsletter segments list`)",
                         hint="add it in the console or with `newsletter segments apply FILE`")
    return segment_set


def _assignments(segment_set: SegmentSet, edition_segments: Sequence[str], chosen: Sequence[str]) -> list[Assignment]:
    """Each chosen segment's rule, less the members an earlier segment of the whole edition wins
    (also when its segments are sent one at a time), so dry run and send agree."""
    order = edition_order(segment_set, edition_segments)
    return [(s, segment_set.assigned_clause(s, among=order)) for s in chosen]


def plan_send(db: Database, settings: Settings, build_dir: Path, *, segments: list[str] | None = None,
              with_coverage: bool = True) -> AudiencePlan:
    """What `send` would do, writing nothing: per segment the audience (the frozen one once its
    send has started) and the exclusions, and, with_coverage, the edition's coverage (members
    claimed by an earlier segment, members no segment reaches)."""
    edition, variants = load_variants(Path(build_dir))
    chosen = _chosen(variants, segments, build_dir, edition)
    edition_segments = [v.segment for v in variants]
    segment_set = _segment_rules(db, settings, edition_segments)
    reach = None
    if with_coverage:
        with db.session() as session:
            reach = coverage(session, segment_set, edition_segments)
    return plan_audience(db, edition, [v.segment for v in chosen],
                         _assignments(segment_set, edition_segments, [v.segment for v in chosen]), reach)


def _chosen(variants: list[VariantToSend], segments: list[str] | None, build_dir: Path,
            edition: str) -> list[VariantToSend]:
    """The variants of the segments asked for (named as people type them: `London`, `Cymru`)."""
    if not segments:
        return variants
    names = resolve_segments(segments, [v.segment for v in variants], where=f"in build {build_dir} (edition {edition})")
    return [v for v in variants if v.segment in names]


def _report(db: Database, run: SendRun, sent_now: int = 0) -> RunReport:
    with db.session() as session:
        rows = session.execute(
            select(Batch.status, func.count(), func.coalesce(func.sum(Batch.recipient_count), 0))
            .where(Batch.run_id == run.id).group_by(Batch.status)
        ).all()
        failed_final = session.scalar(
            select(func.coalesce(func.sum(Batch.recipient_count), 0)).where(
                Batch.run_id == run.id, Batch.status == BatchStatus.FAILED.value,
                Batch.response_status >= 400, Batch.response_status < 500, Batch.response_status != 429)
        )
        problems = session.execute(
            select(Batch.seq, Batch.status, Batch.last_error).where(
                Batch.run_id == run.id, Batch.status.in_([BatchStatus.FAILED.value, BatchStatus.UNCERTAIN.value])
            ).order_by(Batch.seq).limit(20)
        ).all()
    by = {status: int(n) for status, _, n in rows}
    return RunReport(
        run.id, run.edition, run.segment, run.subject, run.status, run.transport, run.audience_count,
        dict(run.excluded), sum(int(c) for _, c, _ in rows),
        sum(int(c) for s, c, _ in rows if s in ("accepted", "failed", "uncertain")), by.get("accepted", 0), by.get("failed", 0),
        int(failed_final or 0), by.get("uncertain", 0), by.get("pending", 0), by.get("in_flight", 0), sent_now, run.started_at,
        run.finished_at, tuple(f"batch {seq}: {status}: {err}" for seq, status, err in problems),
    )


def _mark_runs(db: Database, run_ids: list[int], transport: str, *, starting: bool) -> None:
    with db.write_session() as session:
        for run in session.scalars(select(SendRun).where(SendRun.id.in_(run_ids))):
            if starting:
                run.started_at = run.started_at or utcnow()
                run.transport = transport
                if run.status != RunStatus.FINISHED.value:
                    run.finished_at = None  # a resumed run finishes anew
                run.status = RunStatus.SENDING.value
                continue
            counts = dict(session.execute(
                select(Batch.status, func.count()).where(Batch.run_id == run.id).group_by(Batch.status)).all())
            if counts.get(BatchStatus.PENDING.value) or counts.get(BatchStatus.IN_FLIGHT.value):
                continue
            unsettled = counts.get(BatchStatus.FAILED.value, 0) + counts.get(BatchStatus.UNCERTAIN.value, 0)
            run.status = (RunStatus.INCOMPLETE if unsettled else RunStatus.FINISHED).value
            run.finished_at = run.finished_at or utcnow()


def send_edition(
    db: Database, settings: Settings, build_dir: Path, *, segments: list[str] | None = None,
    transport: Transport | None = None, resend_uncertain: bool = False, dry_run: bool = False,
    confirm: Callable[[AudiencePlan], bool] | None = None, progress: ProgressSink | None = None,
    policy: SendPolicy | None = None,
) -> list[RunReport]:
    """Freeze (once) and send the edition built in `build_dir`; see the module docstring."""
    edition, all_variants = load_variants(Path(build_dir))
    variants = _chosen(all_variants, segments, build_dir, edition)
    edition_segments = [v.segment for v in all_variants]
    assignments = _assignments(_segment_rules(db, settings, edition_segments), edition_segments,
                               [v.segment for v in variants])
    # The counts are for people (the prompt, the dry run, the progress bar): the freeze counts for
    # itself, so a send nobody watches skips these scans of the members table.
    plan = (plan_audience(db, edition, [v.segment for v in variants], assignments)
            if dry_run or confirm is not None or progress is not None else None)
    if dry_run:
        assert plan is not None
        return [RunReport(None, edition, p.segment, v.subject, "dry-run", None, p.audience, p.excluded)
                for p, v in zip(plan.segments, variants, strict=True)]
    if confirm is not None and plan is not None and not confirm(plan):
        return []
    _refuse_paused(db, edition)
    transport = transport or make_transport(settings)
    policy = policy or policy_from_settings(settings)
    journal = journal_dir(settings, db)
    options = MessageOptions(
        public_base_url=settings.public_base_url, secret=token_secret(db, settings), reply_to=settings.reply_to,
        sandbox=settings.sandbox_mode, click_tracking=settings.click_tracking, open_tracking=settings.open_tracking,
    )
    check_frozen_builds(db, edition, variants)  # a resumed send from another build: refused before anything goes
    size = max(1, min(settings.batch_size, MAX_PERSONALIZATIONS))
    already = {r.segment: r for r in (_report(db, run) for run in frozen_runs(db, edition, [v.segment for v in variants]))}
    archive_variants(db, variants)  # the web archive shows a variant once its send has started
    replay_journals(db, journal)  # outcomes of senders that are gone, before any batch is looked at
    sent: dict[int, int] = {}
    run_ids: list[int | None] = [None] * len(variants)

    def on_batch(run_id: int, recipients: int, status: str) -> None:
        if status == BatchStatus.ACCEPTED.value:
            sent[run_id] = sent.get(run_id, 0) + recipients
        if progress is not None:
            progress.advance(recipients, 1)

    if progress is not None and plan is not None:  # not frozen yet: the plan's count, by the freeze's rule
        totals = [(already[p.segment].audience, already[p.segment].batches) if p.segment in already
                  else (p.audience, -(-p.audience // size)) for p in plan.segments]
        progress.start(sum(t[0] for t in totals), sum(t[1] for t in totals),
                       sum(r.accepted + r.failed + r.uncertain for r in already.values()),
                       sum(r.batches_done for r in already.values()))
    sender = Sender(db, transport, {}, policy, on_batch, on_wait=progress.waiting if progress is not None else None,
                    journal_dir=journal, more_runs=True)

    def freeze_one(index: int, census: dict[str, Census], wait: bool = True) -> bool:
        """Freeze one segment (at once when a run exists), make it ready and hand it to the
        sender; False (without `wait`) when another sender is freezing it now."""
        if sender.stop.is_set():
            return True
        variant = variants[index]
        run_id = freeze_segment(db, edition, variant, assignments, batch_size=size, census=census, wait=wait)
        if run_id is None:
            return False
        prepare_runs(db, [run_id], policy, resend_uncertain)
        _mark_runs(db, [run_id], transport.name, starting=True)
        run_ids[index] = run_id
        sender.add_run(run_id, MailBuilder(variant, options, run_id))
        return True

    def freeze_all() -> None:
        # Each segment is sent as soon as it is frozen, while the next one freezes (assigned
        # clauses are disjoint, so the order does not change who gets which variant). One segment
        # at a time: on two cores, two freezing at once on PostgreSQL finished the freeze sooner
        # but took the CPU the sending needed (1,000,000 members: 9.5-9.7 s in all with one,
        # 9.8-11.3 s with two, 10.4 s with three). SQLite has one writer, so there a freeze
        # selects its audience before taking the write lock, and holds it only to copy it in.
        # On PostgreSQL the later segments are counted in one scan (count_audiences) while the
        # first is frozen with a count of its own: the sending starts without waiting for the
        # scan (1,000,000 members: about a second, when nothing else is running yet).
        try:
            later: dict[str, Census] = {}

            def count_later() -> None:
                later.update(count_audiences(db, edition, [v.segment for v in variants[1:]], assignments))

            counting = threading.Thread(target=count_later, name="census")
            counting.start()
            busy = []
            try:
                if variants and not freeze_one(0, {}, wait=False):
                    busy.append(0)
            finally:
                counting.join()
            # a segment another sender is freezing is left to it: this one freezes the next,
            # and takes the busy ones (frozen by then, or waited for) at the end
            busy += [index for index in range(1, len(variants)) if not freeze_one(index, later, wait=False)]
            for index in busy:
                freeze_one(index, later)
        except BaseException as exc:
            sender.fail(exc)
        finally:
            sender.runs_complete()

    freezer = threading.Thread(target=freeze_all, name="freezer", daemon=True)
    freezer.start()
    try:
        with bulk_rows():
            sender.run()
    except KeyboardInterrupt:
        sender.stop.set()
        if freezer.is_alive():
            freezer.join()  # the segment being frozen commits; no other starts
        frozen = [rid for rid in run_ids if rid is not None]
        _mark_runs(db, frozen, transport.name, starting=False)
        raise SendInterrupted([_report(db, _run(db, rid), sent.get(rid, 0)) for rid in frozen]) from None
    finally:
        if freezer.is_alive():
            freezer.join()
    frozen = [rid for rid in run_ids if rid is not None]
    _mark_runs(db, frozen, transport.name, starting=False)
    reports = [_report(db, _run(db, rid), sent.get(rid, 0)) for rid in frozen]
    _refuse_paused(db, edition, reports)  # paused while sending: say so rather than "pending"
    return reports


def _refuse_paused(db: Database, edition: str, reports: list[RunReport] | None = None) -> None:
    pause = edition_pause(db, edition)
    if pause is not None and pause.active:
        raise EditionPaused(edition, pause.reason, reports)


def what_is_left(reports: Sequence[RunReport]) -> tuple[str, str] | None:
    """(message, hint) saying what the runs still have not delivered; None when all was accepted."""
    failed = sum(r.failed for r in reports)
    final = sum(r.failed_final for r in reports)
    uncertain = sum(r.uncertain for r in reports)
    pending = sum(r.pending for r in reports)
    if not (failed or uncertain or pending):
        return None
    editions = " ".join(sorted({r.edition for r in reports}))
    parts, hints = [], []
    if failed - final:
        parts.append(f"{failed - final:,} failed")
        hints.append("run the same send again to retry the failed batches")
    if final:
        parts.append(f"{final:,} refused by the provider")
        hints.append("refused batches (HTTP 4xx) are not retried: fix the cause shown above and resend them")
    if uncertain:
        parts.append(f"{uncertain:,} uncertain")
        hints.append(f"uncertain batches may already have reached SendGrid: see `newsletter sends show {editions}` "
                     "and its activity feed, then send again with --resend-uncertain")
    if pending:
        parts.append(f"{pending:,} still pending")
        hints.append("run the same send again to resume the pending batches")
    total = failed + uncertain + pending
    return f"not delivered to {total:,} recipients: {', '.join(parts)} (see the problems above)", "; ".join(hints)


def _run(db: Database, run_id: int) -> SendRun:
    with db.session() as session:
        run = session.get(SendRun, run_id)
    if run is None:
        raise NotFound(f"no send run {run_id}")
    return run


def edition_started(db: Database, edition: str) -> bool:
    """True when some segment of this edition has been frozen (a send started)."""
    with db.session() as session:
        return session.scalar(select(func.count()).where(SendRun.edition == edition)) != 0


def list_runs(db: Database) -> list[RunReport]:
    with db.session() as session:
        runs = list(session.scalars(select(SendRun).order_by(SendRun.edition, SendRun.id)))
    return [_report(db, run) for run in runs]


def run_report(db: Database, run: int | str) -> list[RunReport]:
    """One run by id, or every run of an edition by its id (e.g. "2026-12")."""
    if isinstance(run, int) or str(run).isdigit():
        with db.session() as session:
            found = session.get(SendRun, int(run))
        if found is not None:
            return [_report(db, found)]
    with db.session() as session:
        runs = list(session.scalars(select(SendRun).where(SendRun.edition == str(run)).order_by(SendRun.id)))
    if not runs:
        raise NotFound(f"no send run or edition {run!r}", hint="see `newsletter sends list`")
    return [_report(db, r) for r in runs]
