"""Scheduling editions: freeze the approved build and record one `scheduled_sends` row per
segment (key `EDITION:SEGMENT`). `schedule`, `move` and `cancel` only write rows: the rows are
the one truth (state, time, frozen build and its hashes), and every daemon reads them (see
newsletter.schedule.daemon), whichever process wrote them.

States: scheduled → sending → sent | failed; scheduled → missed | stale | cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
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
from newsletter.members import defined_segments
from newsletter.models import ScheduledSend, ScheduleState, SendRun, utcnow
from newsletter.render import Build, VariantRecord, build_edition, inputs_fingerprint, load_build

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

    @property
    def key(self) -> str:
        return send_key(self.edition, self.segment)

    @property
    def local_time(self) -> str:
        return describe(self.send_at, self.zone)

    def to_json(self) -> dict[str, Any]:
        local = self.send_at.astimezone(zone(self.zone))
        return {
            "edition": self.edition, "segment": self.segment, "state": self.state,
            "send_at_utc": self.send_at.isoformat(), "send_at_local": local.isoformat(),
            "zone": self.zone, "window": self.window, "audience": self.audience,
            "note": self.note, "build_dir": str(self.build_dir),
            "variant_sha256": self.variant_sha256, "fingerprint": self.fingerprint,
        }


def info_of(row: ScheduledSend, audience: int | None = None) -> ScheduledSendInfo:
    return ScheduledSendInfo(
        edition=row.edition, segment=row.segment, state=row.state, send_at=row.send_at,
        zone=row.zone, build_dir=Path(row.build_dir), manifest_path=Path(row.manifest_path),
        variant_sha256=row.variant_sha256, fingerprint=row.fingerprint, window=row.send_window,
        note=row.note, audience=audience,
    )


# ------------------------------------------------------------------ schedule


@dataclass(frozen=True)
class PlannedSend:
    segment: str
    send_at: datetime
    zone: str
    window: SendWindow | None = None


def plan_sends(
    variants: Sequence[VariantRecord], *, segments: Sequence[str] | None, at: str | datetime | None,
    window: SendWindow | None, now: datetime,
) -> list[PlannedSend]:
    """When each chosen segment goes out (variants: the build record's, in manifest order)."""
    by_name = {v.segment: v for v in variants}
    chosen = list(dict.fromkeys(segments)) if segments else list(by_name)
    unknown = [s for s in chosen if s not in by_name]
    if unknown:
        raise NotFound(
            f"segment(s) not in this edition: {', '.join(unknown)}",
            hint=f"the edition's segments are: {', '.join(by_name)}",
        )
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
        plans.append(PlannedSend(name, when, variant.zone, allowed))
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


def schedule_edition(
    db: Database, settings: Settings, manifest_path: Path, *, segments: Sequence[str] | None = None,
    at: str | datetime | None = None, window: str | None = None, now: datetime | None = None,
) -> list[ScheduledSendInfo]:
    """Validate, build and gate the edition, freeze the build, and record each segment's send.
    Scheduling again replaces earlier rows (unless sending or sent)."""

    now = now or utcnow()
    manifest_path = Path(manifest_path).resolve()
    edition = load_manifest(manifest_path, settings, defined_segments(settings.project_dir))
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
        for plan in plans:
            values = dict(
                manifest_path=str(manifest_path), build_dir=str(build_dir), send_at=plan.send_at,
                zone=plan.zone, fingerprint=fingerprint, variant_sha256=hashes[plan.segment],
                state=S.SCHEDULED, note=None, send_window=str(plan.window) if plan.window else None,
                owner=None, heartbeat_at=None,
            )
            row = session.scalar(
                select(ScheduledSend)
                .where(ScheduledSend.edition == edition.id, ScheduledSend.segment == plan.segment)
                .with_for_update()
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
    db: Database, settings: Settings, *, edition: str | None = None, estimate: bool = True
) -> list[ScheduledSendInfo]:
    """Every scheduled send (oldest send time first), with an audience estimate."""
    with db.session() as session:
        query = select(ScheduledSend).order_by(
            ScheduledSend.send_at, ScheduledSend.edition, ScheduledSend.segment
        )
        if edition is not None:
            query = query.where(ScheduledSend.edition == edition)
        rows = session.scalars(query).all()
    counts = audience_estimates(db, settings, rows) if estimate else {}
    return [info_of(r, counts.get((r.edition, r.segment))) for r in rows]


def _rows(db: Database, edition: str, segment: str | None) -> list[ScheduledSend]:
    with db.session() as session:
        query = select(ScheduledSend).where(ScheduledSend.edition == edition)
        if segment is not None:
            query = query.where(ScheduledSend.segment == segment)
        rows = list(session.scalars(query.order_by(ScheduledSend.segment)).all())
    if not rows:
        what = f"{edition}:{segment}" if segment else f"edition {edition}"
        raise NotFound(f"nothing scheduled for {what}", hint="see `newsletter schedule list`")
    return rows


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


def move(
    db: Database, settings: Settings, edition: str, segment: str, at: str | datetime,
    *, now: datetime | None = None,
) -> ScheduledSendInfo:
    """Give one segment a new send time (also re-arms a missed, cancelled or failed send)."""
    row = _rows(db, edition, segment)[0]
    if row.state not in MOVABLE:
        why = ("; the edition changed after scheduling: schedule the manifest again"
               if row.state == S.STALE else "")
        raise ScheduleError(f"{edition}:{segment} is {row.state}; it cannot be moved{why}")
    when = parse_send_time(at, row.zone)
    require_future(when, row.zone, now or utcnow())
    if row.send_window and not SendWindow.parse(row.send_window).contains(when, row.zone):
        raise ScheduleError(
            f"{describe(when, row.zone)} is outside {segment}'s send window {row.send_window}"
        )
    if not set_state(db, edition, segment, S.SCHEDULED, expect=[row.state], send_at=when,
                     owner=None, heartbeat_at=None):
        raise ScheduleError(f"{edition}:{segment} changed state meanwhile; try again")
    log.info("moved %s:%s to %s", edition, segment, describe(when, row.zone))
    return info_of(_rows(db, edition, segment)[0])
