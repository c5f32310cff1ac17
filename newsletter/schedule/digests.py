"""Recurring digests: each occurrence of `issues/digests/<name>.yaml` becomes an edition.

An occurrence is a `digest_occurrences` row, unique per digest and date (its send time's local
date). `prepare_before` its send time, a daemon inserts the row (of several daemons, the one whose
insert succeeds owns it; the others leave it) and prepares it:

1. imports each feed into issues/articles/ (a feed that fails is named; the others are used);
2. selects the articles newer than the previous digest's (newsletter.content.digest_manifest);
   fewer than `min_new` → skipped, with the reason;
3. writes `issues/<digest>-<date>.yaml`, a normal manifest, and checks it;
4. `auto`: schedules it (scheduled_sends: the daemon sends it at its time, once);
   `review`: builds it (build/<edition>/, for the preview) and emails the comms address a review
   request with the console's preview link and the commands `newsletter digests approve|skip
   NAME DATE`. Approving schedules it; the `deadline` passing first skips it (never sent late).

An occurrence whose time passed while no daemon ran (beyond the misfire grace; for `review`,
beyond its deadline) is recorded `missed` and reported, never sent late. A daemon preparing an
occurrence renews a heartbeat on its row; one that died is replaced by the lease rule of the
batch sender (newsletter.delivery.owner_alive), and preparing again is harmless (the same feeds,
the same manifest).

The console calls the same functions as the CLI: list_digests, digest_detail, list_occurrences,
approve_occurrence, skip_occurrence, run_digest_now, dry_run_digest.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from newsletter.config import Settings
from newsletter.content import (
    Article,
    Digest,
    KnownSegments,
    Selection,
    analyse_digest,
    check_manifest,
    describe,
    digest_paths,
    import_feed,
    load_article,
    load_manifest,
    long_date,
    manifest_text,
    pick_articles,
    select_new,
    zone,
)
from newsletter.db import Database
from newsletter.delivery import Notice, new_owner_id, notify, owner_alive
from newsletter.errors import GateFailed, NewsletterError, NotFound, ProblemsError, ScheduleError
from newsletter.members import defined_segments, resolve_segment, stored_defined_segments
from newsletter.models import DigestOccurrence, OccurrenceState, ScheduledSend, utcnow
from newsletter.render import build_edition
from newsletter.schedule.planning import cancel, schedule_edition

log = logging.getLogger(__name__)
Occ = OccurrenceState
HEARTBEAT_TIMEOUT = timedelta(seconds=60)
APPROVAL_STUCK = timedelta(minutes=10)  # an approval this old that never finished is undone
SEND_MARGIN = timedelta(minutes=1)  # an occurrence due now is scheduled this far ahead
KEPT = (Occ.SCHEDULED,)  # occurrences whose articles count as sent: the next digest takes newer ones


def preview_url(settings: Settings, edition: str) -> str:
    """Where the console shows an edition's preview (the console serves /admin/editions/...)."""
    return f"{settings.public_base_url.rstrip('/')}/admin/editions/{edition}"


def _segment_resolver(name: str, known: Sequence[str]) -> str:
    return resolve_segment(name, known, where="in subscribers/segments.yaml")


def known_segments(settings: Settings, db: Database | None) -> KnownSegments:
    """The segments a digest may name: the stored ones (the database is their truth), or, with no
    database at hand (a dry run on a fresh clone), subscribers/segments.yaml."""
    return stored_defined_segments(db, settings.project_dir) if db is not None else defined_segments(settings.project_dir)


def load_digests(settings: Settings, db: Database | None = None) -> list[tuple[Path, Digest | None, list[str]]]:
    """Every digest definition: (path, the digest or None, its problems as file:line:col)."""
    known = known_segments(settings, db)
    found = []
    for path in digest_paths(settings):
        digest, problems = analyse_digest(path, settings, known, _segment_resolver)
        found.append((path, digest, [str(p) for p in problems]))
    return found


def find_digest(settings: Settings, name: str, db: Database | None = None) -> Digest:
    """The digest called `name`; NotFound naming the known ones, DigestError for its problems."""
    found = {path.stem: (path, digest, problems) for path, digest, problems in load_digests(settings, db)}
    if name not in found:
        hint = f"the digests are: {', '.join(found)}" if found else "add issues/digests/<name>.yaml"
        raise NotFound(f"no digest {name!r} in issues/digests/", hint=hint)
    path, digest, problems = found[name]
    if digest is None:
        raise ScheduleError(f"issues/digests/{path.name} has problems:\n" + "\n".join(problems),
                            hint=f"fix them; `newsletter digests show {name}` lists them")
    return digest


# ------------------------------------------------------------------ what people see


@dataclass(frozen=True)
class OccurrenceInfo:
    digest: str
    occurs_on: date
    send_at: datetime  # UTC
    zone: str
    state: str
    reason: str | None
    edition: str | None
    manifest_path: str | None
    articles: tuple[str, ...]
    feed_problems: tuple[str, ...]
    review_deadline: datetime | None
    decided_by: str | None
    sends: dict[str, str]  # segment -> state of its scheduled send
    preview: str | None

    @property
    def status(self) -> str:
        """The state, with 'sent' / 'sending' once its sends say so."""
        if self.state == Occ.SCHEDULED and self.sends:
            states = set(self.sends.values())
            if states == {"sent"}:
                return "sent"
            if "sending" in states or "sent" in states:
                return "sending"
        return self.state

    @property
    def local_time(self) -> str:
        return describe(self.send_at, self.zone)

    @property
    def review_deadline_text(self) -> str | None:
        return describe(self.review_deadline, self.zone) if self.review_deadline else None

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest, "date": self.occurs_on.isoformat(), "state": self.state,
            "status": self.status, "send_at_utc": self.send_at.isoformat(),
            "send_at_local": self.send_at.astimezone(zone(self.zone)).isoformat(), "reason": self.reason,
            "edition": self.edition, "manifest": self.manifest_path, "articles": list(self.articles),
            "feed_problems": list(self.feed_problems),
            "review_deadline_utc": self.review_deadline.isoformat() if self.review_deadline else None,
            "decided_by": self.decided_by, "sends": self.sends, "preview": self.preview,
        }


@dataclass(frozen=True)
class DigestInfo:
    name: str
    file: str
    digest: Digest | None
    problems: tuple[str, ...]
    next_send: datetime | None
    last: OccurrenceInfo | None

    def to_json(self) -> dict[str, Any]:
        d = self.digest
        data: dict[str, Any] = {"name": self.name, "file": self.file, "valid": d is not None,
                                "problems": list(self.problems)}
        if d is None:
            return data
        data.update({
            "title": d.title, "recurrence": d.recurrence, "recurrence_text": d.recurrence_text, "timezone": d.zone,
            "feeds": list(d.feeds), "segments": list(d.segments), "template": d.template,
            "rules": {"max_articles": d.max_articles, "per_region": d.per_region, "min_new": d.min_new,
                      "lookback_days": d.lookback.days},
            "approval": {"policy": d.policy, "deadline_minutes": int(d.deadline.total_seconds() // 60)},
            "prepare_before_minutes": int(d.prepare_before.total_seconds() // 60),
            "next_occurrence": None, "last_occurrence": self.last.to_json() if self.last else None,
        })
        if self.next_send is not None:
            local = self.next_send.astimezone(zone(d.zone))
            data["next_occurrence"] = {
                "date": local.date().isoformat(), "send_at_local": local.isoformat(),
                "send_at_utc": self.next_send.isoformat(),
                "prepare_at_utc": (self.next_send - d.prepare_before).isoformat(),
                "edition": d.edition_id(local.date()),
            }
        return data


def _shown(path: Path, settings: Settings) -> str:
    try:
        return path.resolve().relative_to(settings.project_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _infos(db: Database, settings: Settings, rows: Sequence[DigestOccurrence],
           zones: dict[str, str]) -> list[OccurrenceInfo]:
    editions = [r.edition for r in rows if r.edition]
    sends: dict[str, dict[str, str]] = {}
    if editions:
        with db.session() as session:
            for edition, segment, state in session.execute(select(
                    ScheduledSend.edition, ScheduledSend.segment, ScheduledSend.state,
            ).where(ScheduledSend.edition.in_(editions))):
                sends.setdefault(edition, {})[segment] = state
    return [OccurrenceInfo(
        digest=r.digest, occurs_on=r.occurs_on, send_at=r.send_at, zone=zones.get(r.digest, settings.timezone),
        state=r.state, reason=r.reason, edition=r.edition, manifest_path=r.manifest_path,
        articles=tuple(r.articles or ()), feed_problems=tuple(r.feed_problems or ()),
        review_deadline=r.review_deadline, decided_by=r.decided_by,
        sends=dict(sorted(sends.get(r.edition or "", {}).items())),
        preview=preview_url(settings, r.edition) if r.edition and r.state != Occ.SKIPPED else None,
    ) for r in rows]


def list_occurrences(db: Database, settings: Settings, name: str | None = None, *,
                     limit: int = 50) -> list[OccurrenceInfo]:
    """The latest occurrences (newest first), of one digest or all."""
    query = select(DigestOccurrence).order_by(DigestOccurrence.send_at.desc(), DigestOccurrence.digest).limit(limit)
    if name is not None:
        query = query.where(DigestOccurrence.digest == name)
    with db.session() as session:
        rows = session.scalars(query).all()
    zones = {d.name: d.zone for _, d, _ in load_digests(settings, db) if d is not None}
    return _infos(db, settings, rows, zones)


def list_digests(db: Database | None, settings: Settings, *, now: datetime | None = None) -> list[DigestInfo]:
    """Every digest definition with its next occurrence and last one (None db: no history)."""
    moment = now or utcnow()
    infos = []
    for path, digest, problems in load_digests(settings, db):
        last = None
        if db is not None:
            latest = list_occurrences(db, settings, path.stem, limit=1)
            last = latest[0] if latest else None
        infos.append(DigestInfo(path.stem, _shown(path, settings), digest, tuple(problems),
                                digest.next_send(moment) if digest else None, last))
    return infos


def digest_detail(db: Database | None, settings: Settings, name: str, *, limit: int = 20,
                  now: datetime | None = None) -> tuple[DigestInfo, list[OccurrenceInfo]]:
    """One digest (its definition, or its problems) and its latest occurrences, newest first
    (`digests show`, the console's digest page); NotFound naming the digests there are."""
    infos = {i.name: i for i in list_digests(db, settings, now=now)}
    if name not in infos:
        raise NotFound(f"no digest {name!r} in issues/digests/",
                       hint=f"the digests are: {', '.join(infos)}" if infos else "add issues/digests/<name>.yaml")
    return infos[name], list_occurrences(db, settings, name, limit=limit) if db is not None else []


def occurrence(db: Database, settings: Settings, name: str, occurs_on: date | str) -> OccurrenceInfo:
    day = _day(occurs_on)
    with db.session() as session:
        row = session.scalar(select(DigestOccurrence).where(
            DigestOccurrence.digest == name, DigestOccurrence.occurs_on == day))
    if row is None:
        raise NotFound(f"digest {name} has no occurrence on {day.isoformat()}",
                       hint=f"see `newsletter digests show {name}`")
    zones = {d.name: d.zone for _, d, _ in load_digests(settings, db) if d is not None}
    return _infos(db, settings, [row], zones)[0]


def _day(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ScheduleError(f"cannot read the date {value!r}", hint="write it like 2026-12-01") from None


# ------------------------------------------------------------------ preparing one occurrence


@dataclass
class Assembled:
    """What preparing an occurrence found and wrote."""

    feed_problems: list[str] = field(default_factory=list)
    feed_notes: list[str] = field(default_factory=list)
    items: int = 0  # feed items read
    new: list[Article] = field(default_factory=list)
    selection: Selection | None = None
    skip_reason: str | None = None
    manifest: Path | None = None
    text: str | None = None


def _feed_source(settings: Settings, source: str) -> str:
    return source if source.lower().startswith(("http://", "https://")) else str(settings.path(source))


def import_feeds(settings: Settings, digest: Digest, articles_dir: Path, now: datetime,
                 ) -> tuple[list[Article], list[str], list[str], int]:
    """(the articles the feeds hold, feed problems, notes, items read). A feed that cannot be read
    is named in the problems and the others are still used."""
    slugs: list[str] = []
    problems: list[str] = []
    notes: list[str] = []
    items = 0
    for source in digest.feeds:
        try:
            outcomes = import_feed(_feed_source(settings, source), articles_dir, timeout=settings.request_timeout,
                                   now=now)
        except NewsletterError as exc:
            problems.append(f"feed {source}: {exc.message.splitlines()[0]}")
            continue
        items += len(outcomes)
        notes.extend(f"feed {source}: {w}" for w in outcomes.warnings)
        slugs.extend(o.slug for o in outcomes if o.slug)
    articles = []
    for slug in dict.fromkeys(slugs):
        try:
            articles.append(load_article(articles_dir / f"{slug}.md"))
        except (ProblemsError, OSError) as exc:
            notes.append(f"article {slug} could not be read: {exc}")
    return articles, problems, notes, items


def _previous(db: Database | None, digest: str, before: datetime) -> tuple[DigestOccurrence | None, set[str]]:
    """The last digest sent or scheduled before `before`, and every article of the digest's earlier
    ones (never sent twice)."""
    if db is None:
        return None, set()
    with db.session() as session:
        rows = session.scalars(select(DigestOccurrence).where(
            DigestOccurrence.digest == digest, DigestOccurrence.state.in_([str(s) for s in KEPT]),
            DigestOccurrence.send_at < before,
        ).order_by(DigestOccurrence.send_at.desc())).all()
    used = {slug for r in rows for slug in (r.articles or ())}
    return (rows[0] if rows else None), used


def assemble(db: Database | None, settings: Settings, digest: Digest, *, send_at: datetime, now: datetime,
             issues_dir: Path) -> Assembled:
    """Import the feeds into issues_dir/articles, select the new articles and write the manifest
    issues_dir/<digest>-<date>.yaml (nothing written when it is skipped)."""
    found = Assembled()
    articles, found.feed_problems, found.feed_notes, found.items = import_feeds(
        settings, digest, issues_dir / "articles", now)
    previous, used = _previous(db, digest.name, send_at)
    if previous is not None and previous.newest_published is not None:
        after, since = previous.newest_published, f"since the {long_date(previous.occurs_on)} digest"
    else:
        after, since = send_at - digest.lookback, f"in the last {digest.lookback.days} days"
    found.new = select_new(articles, after=after, until=now, exclude=used)
    occurs_on = digest.occurs_on(send_at)
    if len(found.feed_problems) == len(digest.feeds):
        found.skip_reason = "no feed could be read: " + "; ".join(found.feed_problems)
        return found
    selection = pick_articles(digest, found.new)
    found.selection = selection
    count = len(selection.included)
    if count == 0 or count < digest.min_new:
        found.skip_reason = (f"no new articles {since}" if count == 0 else
                             f"only {count} new article{'s' if count != 1 else ''} {since} "
                             f"(fewer than {digest.min_new})")
        return found
    notes = [*found.feed_problems, *selection.notes]
    text = manifest_text(digest, selection, occurs_on=occurs_on, send_at=send_at, notes=notes)
    path = issues_dir / f"{digest.edition_id(occurs_on)}.yaml"
    _write_atomically(path, text)
    found.manifest, found.text = path, text
    return found


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check(settings: Settings, manifest: Path, known: KnownSegments) -> str | None:
    """The manifest's first error (as `check` prints it), or None when it is clean."""
    problems = [p for p in check_manifest(manifest, settings, known)
                if p.severity == "error"]
    return f"{len(problems)} problem(s) in {manifest.name}: {problems[0]}" if problems else None


# ------------------------------------------------------------------ notices


def _about(digest: str, occurs_on: date) -> str:
    return f"digest {digest} {occurs_on.isoformat()}"


def _tell(db: Database, settings: Settings, notice: Notice) -> None:
    try:
        notify(db, settings, notice)
    except Exception:
        log.exception("could not record the notice %r", notice.subject)


def _review_notice(settings: Settings, digest: Digest, occurs_on: date, send_at: datetime, deadline: datetime,
                   found: Assembled, edition: str, manifest: str) -> Notice:
    selection = found.selection
    assert selection is not None
    lines = [f"The {long_date(occurs_on)} digest {digest.name} is ready for review: "
             f"{len(selection.included)} new article(s) for {len(selection.picks)} segment(s), to go out at "
             f"{describe(send_at, digest.zone)} once approved.",
             "Articles: " + "; ".join(a.title for a in selection.included) + "."]
    if found.feed_problems:
        lines.append("Feeds that failed (the others were used): " + "; ".join(found.feed_problems) + ".")
    lines += [f"The manifest is {manifest} (edit it before approving if you like; `newsletter check {manifest}`).",
              f"Approve: newsletter digests approve {digest.name} {occurs_on.isoformat()}",
              f"Skip: newsletter digests skip {digest.name} {occurs_on.isoformat()} --reason \"...\"",
              f"Without an approval by {describe(deadline, digest.zone)} it is skipped, never sent late."]
    return Notice(kind="digest-review", about=_about(digest.name, occurs_on), reason="review",
                  subject=f"Review: digest {digest.name} for {long_date(occurs_on)} "
                          f"({len(selection.included)} articles)",
                  paragraphs=tuple(lines), link=preview_url(settings, edition), link_label="Preview in the console",
                  data={"digest": digest.name, "date": occurs_on.isoformat(), "edition": edition,
                        "approve": f"newsletter digests approve {digest.name} {occurs_on.isoformat()}",
                        "skip": f"newsletter digests skip {digest.name} {occurs_on.isoformat()}"})


def _state_notice(kind: str, name: str, occurs_on: date, reason: str, extra: Sequence[str] = ()) -> Notice:
    words = {"digest-skipped": "Skipped", "digest-missed": "Missed", "digest-failed": "Failed",
             "digest-feeds": "Feeds failed"}[kind]
    return Notice(kind=kind, about=_about(name, occurs_on), reason=reason,
                  subject=f"{words}: digest {name} for {long_date(occurs_on)}: {reason}",
                  paragraphs=(f"Digest {name}, {long_date(occurs_on)}: {reason}.", *extra),
                  data={"digest": name, "date": occurs_on.isoformat()})


# ------------------------------------------------------------------ the occurrence's life


class Occurrences:
    """Prepares, approves and skips occurrences; the daemon's part (`tick`) and the CLI's and
    console's (run_now, approve, skip) share it. `owner` names the process holding an occurrence
    while it is prepared."""

    def __init__(self, db: Database, settings: Settings, *, owner: str | None = None,
                 clock: Callable[[], datetime] = utcnow, grace: timedelta = timedelta(minutes=30),
                 heartbeat_timeout: timedelta = HEARTBEAT_TIMEOUT) -> None:
        self.db, self.settings, self.clock, self.grace = db, settings, clock, grace
        self.owner = owner or new_owner_id()
        self.heartbeat_timeout = heartbeat_timeout

    # -------------------------------------------------------------- rows

    def _row(self, occurrence_id: int) -> DigestOccurrence | None:
        with self.db.session() as session:
            return session.get(DigestOccurrence, occurrence_id)

    def _set(self, occurrence_id: int, expect: Sequence[str], *, owned: bool = False, **values: Any) -> bool:
        stmt = update(DigestOccurrence).where(DigestOccurrence.id == occurrence_id,
                                              DigestOccurrence.state.in_([str(s) for s in expect]))
        if owned:
            stmt = stmt.where(DigestOccurrence.owner == self.owner)
        with self.db.write_session() as session:
            return session.execute(stmt.values(updated_at=utcnow(), **values)).rowcount == 1

    def _insert(self, digest: Digest, send_at: datetime, state: str, *, reason: str | None = None) -> int | None:
        """The new occurrence's id, or None when the digest has one on that date already."""
        now = self.clock()
        occurs_on = digest.occurs_on(send_at)
        row = DigestOccurrence(digest=digest.name, occurs_on=occurs_on, send_at=send_at, state=state, reason=reason,
                               edition=digest.edition_id(occurs_on), articles=[], feed_problems=[],
                               owner=self.owner if state == Occ.PREPARING else None,
                               heartbeat_at=now if state == Occ.PREPARING else None)
        try:
            with self.db.write_session() as session:
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError:
            return None

    def heartbeat(self) -> None:
        with self.db.write_session() as session:
            session.execute(update(DigestOccurrence).where(
                DigestOccurrence.owner == self.owner, DigestOccurrence.state == Occ.PREPARING,
            ).values(heartbeat_at=self.clock()))

    # -------------------------------------------------------------- the daemon's part

    def tick(self) -> list[tuple[str, Callable[[], str]]]:
        """What is due now: occurrences to prepare (claimed by inserting their row; returned as
        work for the caller to run), occurrences missed while no daemon ran (recorded and
        reported), reviews past their deadline (skipped), preparations whose daemon died."""
        now = self.clock()
        self._expire_reviews(now)
        self._undo_stuck_approvals(now)
        work: list[tuple[str, Callable[[], str]]] = []
        for path, digest, problems in load_digests(self.settings, self.db):
            if digest is None:
                _tell(self.db, self.settings, Notice(
                    kind="digest-invalid", about=f"digest {path.stem}", reason="\n".join(problems),
                    subject=f"Digest {path.stem} cannot run: {len(problems)} problem(s) in {path.name}",
                    paragraphs=(f"issues/digests/{path.name} has problems, so it does not run until they are fixed:",
                                *problems)))
                continue
            for send_at, late in self._due(digest, now):
                if late:
                    reason = (f"its time {describe(send_at, digest.zone)} passed while no scheduler ran; "
                              "not sent late")
                    if self._insert(digest, send_at, Occ.MISSED, reason=reason) is not None:
                        log.warning("digest %s %s: missed", digest.name, send_at.date())
                        _tell(self.db, self.settings, _state_notice(
                            "digest-missed", digest.name, digest.occurs_on(send_at), reason,
                            ("The next occurrence goes as usual. To send this one anyway: "
                             f"newsletter digests run {digest.name} --now",)))
                    continue
                occurrence_id = self._insert(digest, send_at, Occ.PREPARING)
                if occurrence_id is not None:
                    log.info("digest %s: preparing the %s occurrence", digest.name, digest.occurs_on(send_at))
                    work.append((_about(digest.name, digest.occurs_on(send_at)), partial(self.prepare, digest, occurrence_id)))
        work.extend(self._take_over(now))
        return work

    def _due(self, digest: Digest, now: datetime) -> list[tuple[datetime, bool]]:
        """(send time, too late) of each occurrence whose preparation time has come and that has
        no row yet, oldest first."""
        with self.db.session() as session:
            last = session.scalar(select(DigestOccurrence.send_at).where(DigestOccurrence.digest == digest.name)
                                  .order_by(DigestOccurrence.send_at.desc()).limit(1))
        # A digest seen for the first time starts now (it cannot have missed anything before).
        after = last if last is not None else now - self._lateness(digest) - timedelta(seconds=1)
        return [(t, now > t + self._lateness(digest)) for t in digest.send_times(after, now + digest.prepare_before)]

    def _lateness(self, digest: Digest) -> timedelta:
        """How late an occurrence may still be prepared: the misfire grace, or for `review`
        until its deadline."""
        return digest.deadline if digest.policy == "review" else self.grace

    def _expire_reviews(self, now: datetime) -> None:
        with self.db.session() as session:
            rows = session.scalars(select(DigestOccurrence).where(
                DigestOccurrence.state == Occ.AWAITING_REVIEW, DigestOccurrence.review_deadline <= now)).all()
        for row in rows:
            zone_name = self._zone(row.digest)
            reason = (f"not approved by its deadline {describe(row.review_deadline, zone_name)}; not sent"
                      if row.review_deadline else "not approved in time; not sent")
            if self._set(row.id, [Occ.AWAITING_REVIEW], state=Occ.SKIPPED, reason=reason, decided_at=now):
                log.warning("digest %s %s: %s", row.digest, row.occurs_on, reason)
                _tell(self.db, self.settings, _state_notice("digest-skipped", row.digest, row.occurs_on, reason))

    def _undo_stuck_approvals(self, now: datetime) -> None:
        with self.db.session() as session:
            rows = session.scalars(select(DigestOccurrence).where(
                DigestOccurrence.state == Occ.APPROVING, DigestOccurrence.updated_at < utcnow() - APPROVAL_STUCK)).all()
        for row in rows:
            self._set(row.id, [Occ.APPROVING], state=Occ.AWAITING_REVIEW,
                      reason="an approval did not finish; approve again")

    def _take_over(self, now: datetime) -> list[tuple[str, Callable[[], str]]]:
        """Preparations whose daemon is gone: claimed (compare-and-set on the owner), prepared again."""
        with self.db.session() as session:
            rows = session.scalars(select(DigestOccurrence).where(DigestOccurrence.state == Occ.PREPARING)).all()
        work: list[tuple[str, Callable[[], str]]] = []
        digests = {d.name: d for _, d, _ in load_digests(self.settings, self.db) if d is not None} if rows else {}
        for row in rows:
            if row.owner == self.owner or owner_alive(row.owner, row.heartbeat_at, self.heartbeat_timeout, now=now):
                continue
            digest = digests.get(row.digest)
            stmt = update(DigestOccurrence).where(DigestOccurrence.id == row.id, DigestOccurrence.state == Occ.PREPARING)
            stmt = stmt.where(DigestOccurrence.owner == row.owner) if row.owner else stmt.where(
                DigestOccurrence.owner.is_(None))
            with self.db.write_session() as session:
                if session.execute(stmt.values(owner=self.owner, heartbeat_at=now)).rowcount != 1:
                    continue
            if digest is None:
                self._set(row.id, [Occ.PREPARING], owned=True, state=Occ.FAILED,
                          reason=f"its definition issues/digests/{row.digest}.yaml is gone or has problems")
                continue
            log.warning("digest %s %s: preparing again (its daemon %s is gone)", row.digest, row.occurs_on, row.owner)
            work.append((_about(row.digest, row.occurs_on), partial(self.prepare, digest, row.id)))
        return work

    def _zone(self, name: str) -> str:
        for _, digest, _ in load_digests(self.settings, self.db):
            if digest is not None and digest.name == name:
                return digest.zone
        return self.settings.timezone

    # -------------------------------------------------------------- preparing

    def prepare(self, digest: Digest, occurrence_id: int, *, review_for: timedelta | None = None) -> str:
        """Prepare a claimed occurrence (see the module docstring); returns the state it is left in.
        A review may come until the send time plus the deadline, or (`review_for`, for one run
        now) for that long from now."""
        row = self._row(occurrence_id)
        if row is None or row.state != Occ.PREPARING or row.owner != self.owner:
            return row.state if row else "gone"
        try:
            return self._prepare(digest, row, review_for)
        except Exception as exc:
            log.exception("digest %s %s: preparing failed", digest.name, row.occurs_on)
            reason = f"preparing failed: {exc}"
            if self._set(row.id, [Occ.PREPARING], owned=True, state=Occ.FAILED, reason=reason):
                _tell(self.db, self.settings, _state_notice("digest-failed", digest.name, row.occurs_on, reason))
            return Occ.FAILED

    def _prepare(self, digest: Digest, row: DigestOccurrence, review_for: timedelta | None) -> str:
        now, occurs_on, send_at = self.clock(), row.occurs_on, row.send_at
        issues_dir = self.settings.project_dir / "issues"
        found = assemble(self.db, self.settings, digest, send_at=send_at, now=now, issues_dir=issues_dir)
        problems = list(found.feed_problems)
        if found.skip_reason:
            state = Occ.FAILED if found.selection is None else Occ.SKIPPED
            if self._set(row.id, [Occ.PREPARING], owned=True, state=state, reason=found.skip_reason,
                         feed_problems=problems):
                log.warning("digest %s %s: %s: %s", digest.name, occurs_on, state, found.skip_reason)
                _tell(self.db, self.settings, _state_notice(
                    "digest-failed" if state == Occ.FAILED else "digest-skipped", digest.name, occurs_on,
                    found.skip_reason, [f"Feeds that failed: {'; '.join(problems)}."] if problems else ()))
            return state
        assert found.manifest is not None and found.selection is not None
        manifest = _shown(found.manifest, self.settings)
        log.info("digest %s %s: wrote %s", digest.name, occurs_on, manifest)
        problem = _check(self.settings, found.manifest, known_segments(self.settings, self.db))
        if problem:
            return self._fail(digest, row, f"the manifest did not pass its check: {problem}", manifest, problems)
        edition = digest.edition_id(occurs_on)
        values = dict(manifest_path=manifest, articles=[a.slug for a in found.selection.included],
                      newest_published=found.selection.newest_published, feed_problems=problems)
        if digest.policy == "auto":
            try:
                schedule_edition(self.db, self.settings, found.manifest, at=_send_time(send_at, now), now=now)
            except (NewsletterError, OSError) as exc:
                return self._fail(digest, row, f"could not be scheduled: {exc}", manifest, problems)
            if not self._set(row.id, [Occ.PREPARING], owned=True, state=Occ.SCHEDULED, reason=None, **values):
                return self._after_lost(row.id, edition)
            log.info("digest %s %s: scheduled for %s", digest.name, occurs_on, describe(send_at, digest.zone))
            if problems:
                _tell(self.db, self.settings, _state_notice(
                    "digest-feeds", digest.name, occurs_on, "; ".join(problems),
                    ("The other feeds were used; the digest is scheduled.",)))
            return Occ.SCHEDULED
        try:  # review: the build the console previews (and the gates it must pass)
            build_edition(found.manifest, self.settings, segments=known_segments(self.settings, self.db))
        except (GateFailed, NewsletterError) as exc:
            return self._fail(digest, row, f"did not build: {exc.message}", manifest, problems)
        deadline = now + review_for if review_for is not None else row.send_at + digest.deadline
        if not self._set(row.id, [Occ.PREPARING], owned=True, state=Occ.AWAITING_REVIEW, review_deadline=deadline,
                         reason=None, **values):
            return self._after_lost(row.id, edition)
        log.info("digest %s %s: waiting for review until %s", digest.name, occurs_on, describe(deadline, digest.zone))
        _tell(self.db, self.settings,
              _review_notice(self.settings, digest, occurs_on, send_at, deadline, found, edition, manifest))
        return Occ.AWAITING_REVIEW

    def _fail(self, digest: Digest, row: DigestOccurrence, reason: str, manifest: str | None,
              problems: list[str]) -> str:
        if self._set(row.id, [Occ.PREPARING], owned=True, state=Occ.FAILED, reason=reason, manifest_path=manifest,
                     feed_problems=problems):
            log.warning("digest %s %s: failed: %s", digest.name, row.occurs_on, reason)
            _tell(self.db, self.settings, _state_notice("digest-failed", digest.name, row.occurs_on, reason))
        return Occ.FAILED

    def _after_lost(self, occurrence_id: int, edition: str) -> str:
        """The row left our hands while we prepared it (another daemon took it over)."""
        row = self._row(occurrence_id)
        log.warning("%s: taken over by another scheduler while being prepared", edition)
        return row.state if row else "gone"

    # -------------------------------------------------------------- people's part

    def run_now(self, digest: Digest) -> OccurrenceInfo:
        """Today's occurrence, prepared now (instead of at its time): `auto` is scheduled to go out in
        a minute, `review` waits for approval (as long as a regular occurrence would: until
        prepare_before + deadline from now)."""
        now = self.clock()
        occurrence_id = self._insert(digest, now, Occ.PREPARING)
        if occurrence_id is None:
            existing = occurrence(self.db, self.settings, digest.name, digest.occurs_on(now))
            raise ScheduleError(f"digest {digest.name} already has its {existing.occurs_on.isoformat()} occurrence "
                                f"({existing.status})", hint=f"see `newsletter digests show {digest.name}`")
        self.prepare(digest, occurrence_id, review_for=digest.prepare_before + digest.deadline)
        return occurrence(self.db, self.settings, digest.name, digest.occurs_on(now))

    def approve(self, digest: Digest, occurs_on: date, actor: str) -> OccurrenceInfo:
        """Schedule an occurrence waiting for review, at its send time (or in a minute, when that has
        passed); refused after its deadline (it is then skipped)."""
        now = self.clock()
        row = self._find(digest.name, occurs_on)
        if row.state != Occ.AWAITING_REVIEW:
            raise ScheduleError(f"digest {digest.name} {occurs_on.isoformat()} is {row.state}; only an occurrence "
                                "awaiting review can be approved", hint=row.reason)
        if row.review_deadline is not None and now >= row.review_deadline:
            self._expire_reviews(now)
            raise ScheduleError(f"digest {digest.name} {occurs_on.isoformat()} was not approved by its deadline "
                                f"{describe(row.review_deadline, digest.zone)}: skipped, never sent late")
        stmt = update(DigestOccurrence).where(DigestOccurrence.id == row.id,
                                              DigestOccurrence.state == Occ.AWAITING_REVIEW)
        if row.review_deadline is not None:
            stmt = stmt.where(DigestOccurrence.review_deadline > now)
        with self.db.write_session() as session:
            claimed = session.execute(stmt.values(state=Occ.APPROVING, updated_at=utcnow())).rowcount == 1
        if not claimed:
            raise ScheduleError(f"digest {digest.name} {occurs_on.isoformat()} changed meanwhile",
                                hint=f"see `newsletter digests show {digest.name}`")
        manifest = self.settings.path(row.manifest_path or f"issues/{row.edition}.yaml")
        try:
            schedule_edition(self.db, self.settings, manifest, at=_send_time(row.send_at, now), now=now)
            edition = load_manifest(manifest, self.settings)
        except BaseException as exc:
            self._set(row.id, [Occ.APPROVING], state=Occ.AWAITING_REVIEW,
                      reason=f"approval failed: {exc}; fix it and approve again")
            raise
        articles = sorted({a.slug for v in edition.variants for a in (*v.articles, *([v.featured] if v.featured else []))})
        newest = max((a.published for v in edition.variants for a in v.articles), default=row.newest_published)
        self._set(row.id, [Occ.APPROVING], state=Occ.SCHEDULED, reason=None, decided_by=actor, decided_at=now,
                  articles=articles, newest_published=newest)
        log.info("digest %s %s approved by %s", digest.name, occurs_on, actor)
        return occurrence(self.db, self.settings, digest.name, occurs_on)

    def skip(self, name: str, occurs_on: date, actor: str, reason: str) -> OccurrenceInfo:
        """Skip an occurrence awaiting review, or one scheduled whose sends have not started."""
        now = self.clock()
        row = self._find(name, occurs_on)
        why = f"skipped by {actor}" + (f": {reason}" if reason else "")
        if row.state == Occ.SCHEDULED and row.edition:
            sends = occurrence(self.db, self.settings, name, occurs_on).sends
            started = [s for s, state in sends.items() if state in ("sending", "sent")]
            if started:
                raise ScheduleError(f"digest {name} {occurs_on.isoformat()} is already going out ({', '.join(started)})",
                                    hint=f"see `newsletter sends show {row.edition}`")
            if sends:
                cancel(self.db, self.settings, row.edition)
        elif row.state not in (Occ.AWAITING_REVIEW,):
            raise ScheduleError(f"digest {name} {occurs_on.isoformat()} is {row.state}; nothing to skip",
                                hint=row.reason)
        if not self._set(row.id, [Occ.AWAITING_REVIEW, Occ.SCHEDULED], state=Occ.SKIPPED, reason=why, decided_by=actor,
                         decided_at=now):
            raise ScheduleError(f"digest {name} {occurs_on.isoformat()} changed meanwhile; try again")
        return occurrence(self.db, self.settings, name, occurs_on)

    def _find(self, name: str, occurs_on: date) -> DigestOccurrence:
        with self.db.session() as session:
            row = session.scalar(select(DigestOccurrence).where(
                DigestOccurrence.digest == name, DigestOccurrence.occurs_on == occurs_on))
        if row is None:
            raise NotFound(f"digest {name} has no occurrence on {occurs_on.isoformat()}",
                           hint=f"see `newsletter digests show {name}`")
        return row


def _send_time(send_at: datetime, now: datetime) -> datetime | None:
    """The --at to schedule with: None (the manifest's send_at) while it is ahead; else in a minute."""
    return None if send_at > now + timedelta(seconds=5) else now + SEND_MARGIN


# ------------------------------------------------------------------ service functions


def run_digest_now(db: Database, settings: Settings, name: str, *, now: datetime | None = None) -> OccurrenceInfo:
    """`newsletter digests run NAME --now`."""
    clock = (lambda: now) if now is not None else utcnow
    return Occurrences(db, settings, clock=clock).run_now(find_digest(settings, name, db))


def approve_occurrence(db: Database, settings: Settings, name: str, occurs_on: date | str, actor: str, *,
                       now: datetime | None = None) -> OccurrenceInfo:
    """`newsletter digests approve NAME DATE` (and the console's button)."""
    clock = (lambda: now) if now is not None else utcnow
    return Occurrences(db, settings, clock=clock).approve(find_digest(settings, name, db), _day(occurs_on), actor)


def skip_occurrence(db: Database, settings: Settings, name: str, occurs_on: date | str, actor: str,
                    reason: str = "", *, now: datetime | None = None) -> OccurrenceInfo:
    """`newsletter digests skip NAME DATE` (and the console's button)."""
    clock = (lambda: now) if now is not None else utcnow
    return Occurrences(db, settings, clock=clock).skip(name, _day(occurs_on), actor, reason)


@dataclass(frozen=True)
class DryRun:
    """What `digests run NAME --now --dry-run` found; nothing was written to the project or database."""

    digest: str
    occurs_on: date
    items: int
    feed_problems: tuple[str, ...]
    notes: tuple[str, ...]
    new: tuple[tuple[str, str, tuple[str, ...]], ...]  # (slug, title, regions)
    segments: dict[str, list[str]]  # segment -> its articles
    skip_reason: str | None
    manifest_text: str | None
    check: str | None  # the manifest's first problem, or None
    gates: dict[str, str]  # segment -> PASS / WARN n / FAIL n

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "date": self.occurs_on.isoformat(), "items_read": self.items,
                "feed_problems": list(self.feed_problems), "notes": list(self.notes),
                "new": [{"slug": s, "title": t, "regions": list(r)} for s, t, r in self.new],
                "segments": self.segments, "skip_reason": self.skip_reason, "manifest": self.manifest_text,
                "check": self.check, "gates": self.gates}


def dry_run_digest(db: Database | None, settings: Settings, name: str, *, now: datetime | None = None) -> DryRun:
    """Today's occurrence assembled in a scratch copy of issues/ (feeds imported, manifest written,
    checked and built there); the project and the database are not changed. `db` (None: no
    database yet) only says what earlier digests sent."""
    digest = find_digest(settings, name, db)
    moment = now or utcnow()
    with tempfile.TemporaryDirectory(prefix="newsletter-digest-") as tmp:
        issues = Path(tmp) / "issues"
        articles = settings.project_dir / "issues" / "articles"
        if articles.is_dir():
            shutil.copytree(articles, issues / "articles")
        else:
            (issues / "articles").mkdir(parents=True)
        found = assemble(db, settings, digest, send_at=moment, now=moment, issues_dir=issues)
        check, gates = None, {}
        if found.manifest is not None:
            check = _check(settings, found.manifest, known_segments(settings, db))
            if check is None:
                try:
                    build = build_edition(found.manifest, settings, Path(tmp) / "build",
                                          segments=known_segments(settings, db))
                    gates = {v.segment: v.gates.summary() for v in build.variants}
                except GateFailed as exc:
                    check = exc.message
        selection = found.selection
        segments = {p.segment: [*p.regional, *p.national] for p in selection.picks} if selection else {}
        return DryRun(
            digest=digest.name, occurs_on=digest.occurs_on(moment), items=found.items,
            feed_problems=tuple(found.feed_problems), notes=tuple([*found.feed_notes, *(selection.notes if selection else ())]),
            new=tuple((a.slug, a.title, a.regions) for a in found.new), segments=segments,
            skip_reason=found.skip_reason, manifest_text=found.text, check=check, gates=gates,
        )
