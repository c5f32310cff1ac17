"""Scheduling editions: freeze the approved build and record one `scheduled_sends` row per
segment (key `EDITION:SEGMENT`). `schedule`, `move` and `cancel` only write rows: the rows are
the one truth (state, time, frozen build and its hashes), and every daemon reads them (see
newsletter.schedule.daemon), whichever process wrote them.

States: scheduled → sending → sent | failed; scheduled → missed | stale | cancelled.

Each row remembers who chose its time (models.TimeSource): a time chosen for one segment
(`--segment S --at`, `move --segment`) is never replaced by a later whole-edition `schedule`
unless it says --force; `schedule list` re-checks each waiting send against its inputs
(newsletter.schedule.risk) and shows it *at risk* when it would go stale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from newsletter.config import Settings
from newsletter.content import (
    SendWindow,
    describe,
    load_manifest,
    parse_send_time,
    require_future,
    zone,
)
from newsletter.db import Database
from newsletter.delivery import plan_send
from newsletter.errors import GateFailed, InputError, NotFound, ScheduleError
from newsletter.members import resolve_segment, resolve_segments, stored_defined_segments
from newsletter.models import ScheduledSend, ScheduleState, SendRun, TimeSource, utcnow
from newsletter.render import Build, VariantRecord, build_edition, inputs_fingerprint, load_build
from newsletter.schedule.risk import Risk, RiskChecker

log = logging.getLogger("newsletter.schedule.planning")

S = ScheduleState
# States from which `schedule` (again) and `move` may put a send back on the clock.
REARMABLE = (S.SCHEDULED, S.MISSED, S.CANCELLED, S.FAILED, S.STALE)
MOVABLE = (S.SCHEDULED, S.MISSED, S.CANCELLED, S.FAILED)
CANCELLABLE = (S.SCHEDULED, S.MISSED, S.STALE, S.FAILED)


def send_key(edition: str, segment: str) -> str:
    """How a scheduled send is named in logs and messages."""
    return f"{edition}:{segment}"


@dataclass(frozen=True)
class ScheduledSendInfo:
    edition: str
    segment: str
    state: str
    send_at: datetime  # UTC
    zone: str
    build_dir: Path
    manifest_path: Path
    variant_sha256: str
    fingerprint: str
    window: str | None
    note: str | None
    audience: int | None = None
    time_source: str = TimeSource.MANIFEST
    at_risk: Risk | None = None  # set by list_schedule for a waiting send whose inputs changed
    checked_at: datetime | None = None  # when a daemon last re-checked it against its inputs

    @property
    def key(self) -> str:
        return send_key(self.edition, self.segment)

    @property
    def local_time(self) -> str:
        return describe(self.send_at, self.zone)

    @property
    def local_send_at(self) -> datetime:
        return self.send_at.astimezone(zone(self.zone))

    def to_json(self) -> dict[str, Any]:
        return {
            "edition": self.edition, "segment": self.segment, "state": self.state,
            "send_at_utc": self.send_at.isoformat(), "send_at_local": self.local_send_at.isoformat(),
            "zone": self.zone, "window": self.window, "audience": self.audience,
            "time_source": self.time_source, "at_risk": self.at_risk.to_json() if self.at_risk else None,
            "note": self.note, "build_dir": str(self.build_dir),
            "variant_sha256": self.variant_sha256, "fingerprint": self.fingerprint,
        }


def info_of(row: ScheduledSend, audience: int | None = None, at_risk: Risk | None = None) -> ScheduledSendInfo:
    return ScheduledSendInfo(
        edition=row.edition, segment=row.segment, state=row.state, send_at=row.send_at,
        zone=row.zone, build_dir=Path(row.build_dir), manifest_path=Path(row.manifest_path),
        variant_sha256=row.variant_sha256, fingerprint=row.fingerprint, window=row.send_window,
        note=row.note, audience=audience, time_source=row.time_source or TimeSource.MANIFEST,
        at_risk=at_risk, checked_at=row.checked_at,
    )


def check_send(checker: RiskChecker, send: ScheduledSendInfo, *, due: bool = False) -> Risk | None:
    """Whether a waiting send is at risk (see newsletter.schedule.risk); `due`: its time has
    come, so the command to run asks for a new time."""
    return checker.check(manifest_path=send.manifest_path, build_dir=send.build_dir, segment=send.segment,
                         fingerprint=send.fingerprint, variant_sha256=send.variant_sha256,
                         time_source=send.time_source, local_time=None if due else send.local_send_at)


# ------------------------------------------------------------------ schedule


@dataclass(frozen=True)
class PlannedSend:
    segment: str
    send_at: datetime
    zone: str
    window: SendWindow | None = None
    time_source: str = TimeSource.MANIFEST


def plan_sends(
    variants: Sequence[VariantRecord], *, segments: Sequence[str] | None, at: str | datetime | None,
    window: SendWindow | None, now: datetime,
) -> list[PlannedSend]:
    """When each chosen segment goes out (variants: the build record's, in manifest order).
    Segments may be named by alias (`London`, `Cymru`)."""
    by_name = {v.segment: v for v in variants}
    chosen = resolve_segments(segments, list(by_name), where="in this edition") if segments else list(by_name)
    source = TimeSource.MANIFEST if at is None else (TimeSource.SEGMENT if segments else TimeSource.EDITION)
    plans = []
    for name in chosen:
        variant = by_name[name]
        when = parse_send_time(at, variant.zone) if at is not None else variant.send_at
        if when is None:
            raise ScheduleError(
                f"segment {name!r} has no send time",
                hint="add send_at to the manifest (or the segment), or give --at",
            )
        when = when.astimezone(UTC)
        require_future(when, variant.zone, now)
        allowed = window or (SendWindow.parse(variant.window) if variant.window else None)
        if allowed and not allowed.contains(when, variant.zone):
            raise ScheduleError(
                f"segment {name!r} would go out at {describe(when, variant.zone)}, "
                f"outside its send window {allowed}",
                hint="choose a time inside the window with --at",
            )
        plans.append(PlannedSend(name, when, variant.zone, allowed, source))
    return plans


def freeze_build(manifest_path: Path, settings: Settings, edition_id: str) -> tuple[Build, str]:
    """Build the edition into build/scheduled/<edition>/<fingerprint>/ (never changed once
    written; same inputs reuse it). Returns (the checked build, inputs fingerprint)."""

    fingerprint = inputs_fingerprint(manifest_path, settings)
    target = settings.project_dir / "build" / "scheduled" / edition_id / fingerprint[:16]
    build = build_edition(manifest_path, settings, out_dir=target, reuse=True)
    if build.inputs_sha256 != fingerprint:
        raise ScheduleError(
            f"{manifest_path} or its articles changed while building",
            hint="schedule again once editing has finished",
        )
    return load_build(target), fingerprint


def _chosen_times_kept(rows: Sequence[ScheduledSend], plans: Sequence[PlannedSend], force: bool) -> dict[str, str]:
    """A whole-edition schedule must not silently replace a time chosen for one segment: the
    segments whose waiting send has such a time that this schedule would change. ScheduleError
    naming them, unless `force` (then: segment → the note saying what was replaced)."""
    planned = {p.segment: p for p in plans}
    clashes = [r for r in rows if r.state == S.SCHEDULED and r.time_source == TimeSource.SEGMENT
               and r.segment in planned and planned[r.segment].send_at != r.send_at]
    if not clashes:
        return {}
    if not force:
        names = ", ".join(f"{r.segment} ({describe(r.send_at, r.zone)})" for r in clashes)
        others = [p.segment for p in plans if p.segment not in {r.segment for r in clashes}]
        keep = " ".join(f"--segment {s}" for s in others)
        raise ScheduleError(
            f"not scheduled: the whole-edition time would replace the time chosen for {names}",
            hint=(f"to keep those times, schedule the others only ({keep}); " if others else "")
            + "to replace them, add --force",
        )
    return {r.segment: f"time replaced by a whole-edition schedule (was {describe(r.send_at, r.zone)}, "
                       "chosen for this segment)" for r in clashes}


def schedule_edition(
    db: Database, settings: Settings, manifest_path: Path, *, segments: Sequence[str] | None = None,
    at: str | datetime | None = None, window: str | None = None, now: datetime | None = None,
    force: bool = False,
) -> list[ScheduledSendInfo]:
    """Validate, build and gate the edition, freeze the build, and record each segment's send.
    Scheduling again replaces earlier rows (unless sending or sent); a whole-edition schedule
    (no `segments`) that would change a time chosen for one segment is refused unless `force`."""

    now = now or utcnow()
    manifest_path = Path(manifest_path).resolve()
    edition = load_manifest(manifest_path, settings, stored_defined_segments(db, settings.project_dir))
    build, fingerprint = freeze_build(manifest_path, settings, edition.id)
    send_window = SendWindow.parse(window) if window else None
    plans = plan_sends(build.variants, segments=segments, at=at, window=send_window, now=now)
    with db.session() as session:
        done = session.scalars(
            select(ScheduledSend).where(
                ScheduledSend.edition == edition.id,
                ScheduledSend.segment.in_([p.segment for p in plans]),
                ScheduledSend.state.in_([S.SENDING, S.SENT]),
            )
        ).all()
        if done:
            names = ", ".join(f"{r.segment} ({r.state})" for r in done)
            raise ScheduleError(
                f"edition {edition.id} is already sending or sent to: {names}",
                hint="an edition goes to each segment once; leave out those segments with --segment",
            )
        # A segment sent (or being sent) directly with `newsletter send` has a send run already.
        sent = session.scalars(
            select(SendRun.segment).where(
                SendRun.edition == edition.id, SendRun.segment.in_([p.segment for p in plans])
            ).order_by(SendRun.segment)
        ).all()
        if sent:
            raise ScheduleError(
                f"edition {edition.id} is already being sent or sent by `newsletter send`: "
                f"{', '.join(sent)}",
                hint="an edition goes to each segment once; see `newsletter sends show "
                f"{edition.id}`, and leave out those segments with --segment",
            )
    build_dir, hashes = build.out_dir, {v.segment: v.sha256 for v in build.variants}
    with db.write_session() as session:
        existing = session.scalars(
            select(ScheduledSend)
            .where(ScheduledSend.edition == edition.id, ScheduledSend.segment.in_([p.segment for p in plans]))
            .with_for_update()
        ).all()
        replaced = _chosen_times_kept(existing, plans, force) if segments is None else {}
        by_segment = {r.segment: r for r in existing}
        for plan in plans:
            row = by_segment.get(plan.segment)
            same_chosen_time = (row is not None and row.state == S.SCHEDULED and row.send_at == plan.send_at
                                and row.time_source == TimeSource.SEGMENT)
            values = dict(
                manifest_path=str(manifest_path), build_dir=str(build_dir), send_at=plan.send_at,
                zone=plan.zone, fingerprint=fingerprint, variant_sha256=hashes[plan.segment],
                state=S.SCHEDULED, note=replaced.get(plan.segment),
                send_window=str(plan.window) if plan.window else None, owner=None, heartbeat_at=None,
                time_source=TimeSource.SEGMENT if same_chosen_time else plan.time_source, checked_at=now,
            )
            if row is None:
                session.add(ScheduledSend(edition=edition.id, segment=plan.segment, **values))
            elif row.state in REARMABLE:
                for key, value in values.items():
                    setattr(row, key, value)
            else:
                raise ScheduleError(f"{edition.id}:{plan.segment} is {row.state}; not rescheduled")
    for plan in plans:
        log.info("scheduled %s:%s for %s", edition.id, plan.segment, describe(plan.send_at, plan.zone))
    return [i for i in list_schedule(db, settings, edition=edition.id) if i.segment in
            {p.segment for p in plans}]


# ------------------------------------------------------------------ list, cancel, move


def audience_estimates(db: Database, settings: Settings, rows: Sequence[ScheduledSend]) -> dict[tuple[str, str], int]:
    """Each send's audience as delivery plans it (the counts of `send --dry-run` on the frozen
    build): the members eligible now, or the frozen audience once its send has started."""
    by_build: dict[str, list[ScheduledSend]] = {}
    for row in rows:
        by_build.setdefault(row.build_dir, []).append(row)
    counts: dict[tuple[str, str], int] = {}
    for build_dir, sends in by_build.items():
        try:
            plan = plan_send(db, settings, Path(build_dir), segments=[r.segment for r in sends],
                             with_coverage=False)
        except (InputError, GateFailed) as exc:  # no segments file, a segment gone, a damaged build
            log.debug("no audience estimate for %s: %s", build_dir, exc)
            continue
        counts.update({(plan.edition, p.segment): p.audience for p in plan.segments})
    return counts


def list_schedule(
    db: Database, settings: Settings, *, edition: str | None = None, estimate: bool = True,
    check: bool = True,
) -> list[ScheduledSendInfo]:
    """Every scheduled send (oldest send time first), with an audience estimate and, for a
    waiting send whose approved inputs changed since, why it is at risk (`check`)."""
    with db.session() as session:
        query = select(ScheduledSend).order_by(
            ScheduledSend.send_at, ScheduledSend.edition, ScheduledSend.segment
        )
        if edition is not None:
            query = query.where(ScheduledSend.edition == edition)
        rows = session.scalars(query).all()
    counts = audience_estimates(db, settings, rows) if estimate else {}
    infos = [info_of(r, counts.get((r.edition, r.segment))) for r in rows]
    if not check:
        return infos
    checker = RiskChecker(settings)
    return [replace(i, at_risk=check_send(checker, i)) if i.state == S.SCHEDULED else i for i in infos]


def _rows(db: Database, edition: str, segment: str | None = None) -> list[ScheduledSend]:
    """The edition's rows (or one segment's, named as people type it), in segment order."""
    with db.session() as session:
        rows = list(session.scalars(select(ScheduledSend).where(ScheduledSend.edition == edition)
                                    .order_by(ScheduledSend.segment)).all())
    if not rows:
        what = f"{edition}:{segment}" if segment else f"edition {edition}"
        raise NotFound(f"nothing scheduled for {what}", hint="see `newsletter schedule list`")
    if segment is None:
        return rows
    name = resolve_segment(segment, [r.segment for r in rows], where=f"scheduled for edition {edition}")
    return [r for r in rows if r.segment == name]


def set_state(
    db: Database, edition: str, segment: str, new: str, *, expect: Sequence[str],
    note: str | None = None, owned_by: str | None = None, unchanged_since: datetime | None = None,
    **values: Any,
) -> bool:
    """Compare-and-set: move to `new` only if the state is one of `expect` (and, if given, the
    row is owned by `owned_by`, and nobody has rescheduled or moved it since `unchanged_since`,
    its updated_at when it was read). True if this call made the change."""
    stmt = update(ScheduledSend).where(
        ScheduledSend.edition == edition, ScheduledSend.segment == segment,
        ScheduledSend.state.in_([str(s) for s in expect]),
    )
    if owned_by is not None:
        stmt = stmt.where(ScheduledSend.owner == owned_by)
    if unchanged_since is not None:
        stmt = stmt.where(ScheduledSend.updated_at == unchanged_since)
    stmt = stmt.values(state=str(new), note=note, updated_at=utcnow(), **values)
    with db.write_session() as session:
        return session.execute(stmt).rowcount == 1


def cancel(
    db: Database, settings: Settings, edition: str, segment: str | None = None
) -> list[ScheduledSendInfo]:
    """Cancel the edition's waiting sends (all segments, or one). Sending/sent ones are refused."""
    rows = _rows(db, edition, segment)
    busy = [r for r in rows if r.state in (S.SENDING, S.SENT)]
    if segment is not None and busy:
        raise ScheduleError(
            f"{edition}:{segment} is {busy[0].state}; it can no longer be cancelled",
            hint="to stop a send in progress use the delivery commands",
        )
    for row in rows:
        # keep why a missed, stale or failed send did not go out
        note = "cancelled" if row.state == S.SCHEDULED else f"cancelled; was {row.state}: {row.note or ''}".rstrip(": ")
        if row.state in CANCELLABLE and set_state(
            db, row.edition, row.segment, S.CANCELLED, expect=CANCELLABLE, note=note
        ):
            log.info("cancelled %s:%s", row.edition, row.segment)
    return [i for i in list_schedule(db, settings, edition=edition, estimate=False)
            if segment is None or i.segment == segment]


def move_sends(
    db: Database, settings: Settings, edition: str, at: str | datetime, *,
    segments: Sequence[str] | None = None, all_segments: bool = False, now: datetime | None = None,
) -> list[ScheduledSendInfo]:
    """Give several segments (or, all_segments, every segment still to go out: scheduled,
    missed or failed) one new send time. Every segment is checked before any is moved: a time
    in the past or outside a segment's window, or a segment that cannot move (stale, sending,
    sent), moves none. Also re-arms missed, cancelled (when named) and failed sends."""
    if all_segments == bool(segments):
        raise ScheduleError("say which segments to move: --segment S (repeatable) or --all")
    rows = _rows(db, edition)
    if all_segments:
        chosen = [r for r in rows if r.state in (S.SCHEDULED, S.MISSED, S.FAILED, S.STALE)]
        if not chosen:
            states = ", ".join(f"{r.segment} {r.state}" for r in rows)
            raise ScheduleError(f"nothing of edition {edition} is waiting to go out ({states})",
                                hint="name a cancelled segment with --segment to re-arm it")
    else:
        names = resolve_segments(segments or (), [r.segment for r in rows], where=f"scheduled for edition {edition}")
        chosen = [r for r in rows if r.segment in names]
    stuck = [r for r in chosen if r.state not in MOVABLE]
    if stuck:
        why = {S.STALE: "the edition changed after scheduling: schedule the manifest again",
               S.SENDING: "it is being sent now", S.SENT: "it was sent"}
        details = "; ".join(f"{edition}:{r.segment} is {r.state} ({why.get(S(r.state), r.state)})" for r in stuck)
        raise ScheduleError(f"not moved: {details}",
                            hint="nothing was moved; leave those segments out with --segment" if len(chosen) > 1 else None)
    moment = now or utcnow()
    times: dict[str, datetime] = {}
    for row in chosen:
        when = parse_send_time(at, row.zone)
        require_future(when, row.zone, moment)
        if row.send_window and not SendWindow.parse(row.send_window).contains(when, row.zone):
            raise ScheduleError(
                f"{describe(when, row.zone)} is outside {row.segment}'s send window {row.send_window}",
                hint="nothing was moved; choose a time inside the window",
            )
        times[row.segment] = when
    source = TimeSource.EDITION if all_segments else TimeSource.SEGMENT
    for row in chosen:
        if not set_state(db, edition, row.segment, S.SCHEDULED, expect=[row.state], send_at=times[row.segment],
                         owner=None, heartbeat_at=None, time_source=source):
            raise ScheduleError(f"{edition}:{row.segment} changed state meanwhile; try again")
        log.info("moved %s:%s to %s", edition, row.segment, describe(times[row.segment], row.zone))
    moved = {r.segment for r in chosen}
    return [info_of(r) for r in _rows(db, edition) if r.segment in moved]


def move(
    db: Database, settings: Settings, edition: str, segment: str, at: str | datetime,
    *, now: datetime | None = None,
) -> ScheduledSendInfo:
    """Give one segment a new send time (also re-arms a missed, cancelled or failed send)."""
    return move_sends(db, settings, edition, at, segments=[segment], now=now)[0]


# ------------------------------------------------------------------ sending outside the schedule


def release_for_direct_send(
    db: Database, build_dir: Path, segments: Sequence[str] | None, *, now: bool, actor: str,
) -> list[ScheduledSendInfo]:
    """Before `newsletter send` sends segments of the build itself (all of them, or `segments`,
    named as people type them): a segment that is scheduled is refused (ScheduleError naming it
    and its time), unless `now`, which cancels its schedule with a note saying who sent it at
    once and when. A segment the scheduler is sending is always refused. Returns the sends
    cancelled."""
    record = load_build(build_dir, for_sending=False).record
    names = [v.segment for v in record.variants]
    segments = resolve_segments(segments, names, where=f"in edition {record.edition}") if segments else names
    edition = record.edition
    with db.session() as session:
        rows = list(session.scalars(select(ScheduledSend).where(
            ScheduledSend.edition == edition, ScheduledSend.segment.in_(list(segments)),
            ScheduledSend.state.in_([S.SCHEDULED, S.SENDING]),
        ).order_by(ScheduledSend.segment)).all())
    sending = [r for r in rows if r.state == S.SENDING]
    if sending:
        raise ScheduleError(
            f"the scheduler is sending {', '.join(f'{edition}:{r.segment}' for r in sending)} now",
            hint=f"wait for it to finish: `newsletter sends show {edition}`")
    if rows and not now:
        times = ", ".join(f"{r.segment} at {describe(r.send_at, r.zone)}" for r in rows)
        raise ScheduleError(
            f"edition {edition} is scheduled: {times}; not sent now",
            hint="to send at once instead, add --now (it cancels that schedule); to leave it to the "
                 "scheduler, do nothing; to drop it: `newsletter schedule cancel "
                 f"{edition}`")
    moment = utcnow()
    cancelled = []
    for row in rows:
        note = (f"cancelled: sent at once with `newsletter send --now` by {actor} at "
                f"{describe(moment, row.zone)} instead of {describe(row.send_at, row.zone)}")
        if not set_state(db, edition, row.segment, S.CANCELLED, expect=[S.SCHEDULED], note=note):
            raise ScheduleError(f"{edition}:{row.segment} was taken by the scheduler meanwhile; not sent now",
                                hint=f"see `newsletter sends show {edition}`")
        log.info("%s:%s cancelled for a direct send by %s", edition, row.segment, actor)
        cancelled.append(row.segment)
    return [info_of(r) for r in _rows(db, edition) if r.segment in cancelled] if cancelled else []


def scheduled_times(db: Database, edition: str) -> dict[str, ScheduledSendInfo]:
    """The edition's scheduled sends by segment (any state), e.g. for its preview page."""
    with db.session() as session:
        rows = session.scalars(select(ScheduledSend).where(ScheduledSend.edition == edition)).all()
    return {r.segment: info_of(r) for r in rows}
