"""CLI commands for the delivery area: `send`, `sends list|show`, `suppressions sync`.

Thin: parse options, call newsletter.delivery.send / newsletter.members.suppressions, print. User data (subjects,
segment names, errors from the provider) is printed without Rich markup interpretation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from newsletter.cli.common import (
    console,
    database,
    err_console,
    manifest_path,
    print_json,
    settings,
)
from newsletter.errors import DeliveryError, InProgressElsewhere, InputError, NewsletterError

if TYPE_CHECKING:
    from rich.progress import TaskID

    from newsletter.config import Settings
    from newsletter.db import Database
    from newsletter.delivery import AudiencePlan, RunReport
    from newsletter.members import Coverage

sends_app = typer.Typer(help="Send runs: what was sent, to how many, what failed.", no_args_is_help=True)
suppressions_app = typer.Typer(help="Bounces, spam reports and unsubscribes kept by SendGrid.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("send")(send_command)
    app.add_typer(sends_app, name="sends")
    app.add_typer(suppressions_app, name="suppressions")


class RichProgress:
    """ProgressSink drawing recipients and batches done, rate and ETA on stderr."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TextColumn("recipients"),
            TaskProgressColumn(), TextColumn("{task.fields[batches]} batches"),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=err_console, transient=False,
        )
        self.task: TaskID | None = None
        self.batches_total = 0
        self.batches_done = 0

    def start(self, total_recipients: int, total_batches: int, done_recipients: int, done_batches: int) -> None:
        self.batches_total, self.batches_done = total_batches, done_batches
        self.progress.start()
        self.task = self.progress.add_task("send", total=total_recipients, completed=done_recipients,
                                           batches=f"{done_batches}/{total_batches}", rate="")

    def advance(self, recipients: int, batches: int) -> None:
        self.batches_done += batches
        self.progress.update(self.task, advance=recipients, batches=f"{self.batches_done}/{self.batches_total}")
        speed = self.progress.tasks[0].speed
        if speed:
            self.progress.update(self.task, rate=f"{speed:,.0f} recipients/s")

    def waiting(self, seconds: float, message: str) -> None:
        self.progress.console.print(message, markup=False)

    def stop(self) -> None:
        self.progress.stop()


def _build_dir(manifest: Path, build: Path | None, cfg: Settings) -> Path:
    if build is not None:
        return cfg.path(build)
    try:
        from newsletter.content import load_manifest
        from newsletter.render import build_edition
    except ImportError:
        raise InputError("building is not available in this version", hint="pass --build DIR (a built edition)") from None
    from newsletter.cli.common import known_segments
    from newsletter.delivery import edition_started

    known = known_segments(cfg)
    edition = load_manifest(manifest_path(cfg, manifest), cfg, known)
    out_dir = cfg.project_dir / "build" / edition.id
    with database(cfg) as db:
        started = edition_started(db, edition.id)
    if started and (out_dir / "build.json").is_file():
        # Resuming: send exactly what the first send froze; the build's hashes are checked.
        err_console.print(f"resuming edition {edition.id} from {out_dir} (built for its first send)", markup=False)
        return out_dir
    # Concurrent first sends share one build: one builds, the others wait and reuse it.
    build_edition(manifest_path(cfg, manifest), cfg, out_dir, segments=known, reuse=True)  # GateFailed when a gate fails
    return out_dir


def _confirm(plan: AudiencePlan) -> bool:
    table = Table(title=Text(f"Send edition {plan.edition}?"), title_justify="left")
    for column in ("segment", "recipients", "excluded (unsubscribed/bounced/complained/erased)", "note"):
        table.add_column(column, overflow="fold")
    for s in plan.segments:
        ex = s.excluded
        excluded = "/".join(str(ex.get(k, 0)) for k in ("unsubscribed", "bounced", "complained", "erased"))
        table.add_row(Text(s.segment), f"{s.audience:,}", excluded,
                      "frozen earlier: resumes" if s.frozen else "")
    err_console.print(table)
    return typer.confirm(f"Send to {plan.audience:,} members?", default=False, err=True)


def print_plan(plan: AudiencePlan, as_json: bool) -> None:
    """`send --dry-run`: the audience per segment, its exclusions, and the edition's coverage."""
    coverage = plan.coverage
    if as_json:
        print_json([{"edition": plan.edition, "segment": s.segment, "status": "dry-run", "audience": s.audience,
                     "excluded": s.excluded, "frozen": s.frozen,
                     "claimed_by_earlier": coverage.segment(s.segment).claimed if coverage else {},
                     "not_in_any_segment": coverage.uncovered if coverage else {}}
                    for s in plan.segments])
        return
    table = Table(title=Text(f"edition {plan.edition}: dry run, nothing sent"), title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("segment", "audience", "unsubscribed", "bounced", "complained", "erased"):
        table.add_column(column, justify="left" if column == "segment" else "right", no_wrap=True)
    table.add_column("note", overflow="fold")
    for s in plan.segments:
        table.add_row(Text(s.segment), f"{s.audience:,}", *(f"{s.excluded.get(k, 0):,}" for k in EXCLUDED),
                      "frozen earlier: resumes with this audience" if s.frozen else "")
    console.print(table)
    if coverage is not None:
        print_coverage(coverage)


EXCLUDED = ("unsubscribed", "bounced", "complained", "erased")


def print_coverage(coverage: Coverage) -> None:
    """Members claimed by an earlier segment, and members no segment of the edition reaches."""
    for s in coverage.segments:
        for earlier, count in s.claimed.items():
            console.print(Text(f"{s.segment}: {count:,} more member{'s' if count != 1 else ''} match it "
                               f"but get {earlier}, which comes first"))
    if any(s.claimed for s in coverage.segments):
        console.print(Text(f"(order: {', '.join(coverage.order)}; {coverage.rule})"), style="dim")
    if coverage.uncovered_total:
        regions = ", ".join(f"{'no region' if r == 'none' else r} {n:,}" for r, n in coverage.uncovered.items())
        console.print(Text(f"not in any segment of this edition: {coverage.uncovered_total:,} active "
                           f"member{'s' if coverage.uncovered_total != 1 else ''} ({regions})"))
    else:
        console.print("every active member is in a segment of this edition", markup=False)


def print_reports(reports: list[RunReport], as_json: bool, *, after_send: bool = False) -> None:
    if as_json:
        print_json([r.as_dict() for r in reports])
        return
    table = Table(title=Text(f"edition {', '.join(sorted({r.edition for r in reports}))}"),
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("run", justify="right")
    table.add_column("segment", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("audience", "accepted", "failed", "uncertain"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    table.add_column("time", justify="right")
    for r in reports:
        table.add_row(str(r.run_id or "-"), Text(r.segment), r.status, f"{r.audience:,}", f"{r.accepted:,}",
                      f"{r.failed:,}", f"{r.uncertain:,}",
                      f"{r.duration_seconds:.1f}s" if r.duration_seconds is not None else "-")
    console.print(table)
    pending = sum(r.pending + r.in_flight for r in reports)
    if after_send:
        console.print(f"sent by this command: {sum(r.sent_now for r in reports):,} recipients", markup=False)
    if pending:
        console.print(f"still pending: {pending:,} recipients (send again to resume)", markup=False)
    for r in reports:
        excluded = ", ".join(f"{k} {v}" for k, v in r.excluded.items() if v)
        if excluded:
            console.print(f"{r.segment}: excluded {excluded}", markup=False)
        for problem in r.problems:
            console.print(f"{r.segment}: {problem}", markup=False)


def send_command(
    manifest: Annotated[Path, typer.Argument(help="The issue manifest, e.g. issues/2026-12.yaml.")],
    segment: Annotated[list[str] | None, typer.Option("--segment", help="Send only this segment (repeatable).")] = None,
    transport: Annotated[str | None, typer.Option(
        help="outbox | sendgrid | memory (default: sendgrid when SENDGRID_API_KEY is set, else outbox).")] = None,
    outbox: Annotated[Path | None, typer.Option(help="Outbox directory (default NEWSLETTER_OUTBOX_DIR or outbox/).")] = None,
    build: Annotated[Path | None, typer.Option(help="Send this built edition (build.json) instead of building now.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the audience; freeze and send nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="SendGrid sandbox mode: validated, not delivered.")] = False,
    resend_uncertain: Annotated[bool, typer.Option(
        "--resend-uncertain", help="Also re-send batches that may already have been delivered.")] = False,
    now: Annotated[bool, typer.Option(
        "--now", help="Send segments that are scheduled at once: their schedule is cancelled (noted in "
                      "`schedule list`).")] = False,
    test: Annotated[list[str] | None, typer.Option(
        "--test", help="Send a [TEST] of each variant (or the --segment ones) to this address only (repeatable); "
                       "nothing is frozen and it is not counted as a send.")] = None,
) -> None:
    """Send an edition: build it (or load --build), freeze the audience, deliver, report. Re-running resumes.

    A segment that is scheduled is refused unless --now (which cancels its schedule)."""
    import getpass

    from newsletter.delivery import (
        EditionPaused,
        SendInterrupted,
        make_transport,
        plan_send,
        proof_addresses,
        send_edition,
        send_test,
        what_is_left,
    )
    from newsletter.schedule import release_for_direct_send

    cfg = settings(near=manifest, sandbox_mode=True if sandbox else None, outbox_dir=outbox)
    if test and dry_run:
        raise InputError("--test and --dry-run do not go together", hint="a test send already sends nothing to members")
    addresses = proof_addresses(test) if test else ()
    chosen = None if dry_run else make_transport(cfg, transport)  # a bad --outbox fails before building
    if test:
        from newsletter.schedule import proof_build

        assert chosen is not None
        with database(cfg) as db:
            build_dir = cfg.path(build) if build is not None else proof_build(db, cfg, manifest_path(cfg, manifest))
        done = send_test(cfg, build_dir, addresses, transport=chosen, segments=segment or None)
        for segment_name, subject in zip(done.segments, done.subjects, strict=True):
            console.print(Text(f"test of {done.edition}:{segment_name} sent to {', '.join(done.addresses)}: {subject}"))
        console.print("not a send: nothing was frozen or counted (`newsletter sends list` is unchanged)", markup=False)
        return
    build_dir = _build_dir(manifest, build, cfg)
    if dry_run:
        with database(cfg) as db:
            plan = plan_send(db, cfg, build_dir, segments=segment or None)
        print_plan(plan, as_json)
        return
    actor = f"cli:{getpass.getuser()}"

    def release(db: Database) -> None:
        """Refuse scheduled segments, or with --now cancel their schedule (once confirmed)."""
        for cancelled in release_for_direct_send(db, build_dir, segment or None, now=now, actor=actor):
            err_console.print(f"{cancelled.key}: schedule cancelled ({cancelled.note})", markup=False)

    def confirm_then_release(plan: AudiencePlan) -> bool:
        if not (yes or _confirm(plan)):
            return False
        release(db)
        return True

    if not now:
        with database(cfg) as db:
            release(db)
    progress = None if (as_json or dry_run) else RichProgress()
    try:
        with database(cfg) as db:
            asked = confirm_then_release if now else (None if yes else _confirm)
            reports = send_edition(db, cfg, build_dir, segments=segment or None, transport=chosen,
                                   resend_uncertain=resend_uncertain, dry_run=dry_run,
                                   confirm=asked, progress=progress)
    except EditionPaused as paused:
        if progress:
            progress.stop()
        if paused.reports:
            print_reports(paused.reports, as_json, after_send=True)
        raise
    except SendInterrupted as stopped:
        if progress:
            progress.stop()
        print_reports(stopped.reports, as_json, after_send=True)
        err_console.print("requests in flight were recorded; run the same command again to resume", markup=False)
        raise KeyboardInterrupt from None  # the root CLI prints "interrupted" and exits 130
    finally:
        if progress and progress.task is not None:
            progress.stop()
    if not reports:
        raise DeliveryError("cancelled: nothing was sent", hint="pass --yes to send without asking")
    print_reports(reports, as_json, after_send=True)
    if dry_run:
        return
    if sum(r.audience for r in reports) == 0:
        err_console.print("nothing to send: no active members in these segments", markup=False)
    elif sum(r.sent_now for r in reports) == 0 and all(r.all_accepted for r in reports):
        err_console.print(f"nothing to send: edition {reports[0].edition} was already sent "
                          "(see `newsletter sends show`)", markup=False)
    elsewhere = sum(r.in_flight for r in reports)
    left = what_is_left(reports)
    if elsewhere:
        raise InProgressElsewhere(
            f"in progress elsewhere: {elsewhere:,} recipients are being sent by another process right now",
            hint="see `newsletter sends show` when it has finished" + (f"; also {left[0]}" if left else ""))
    if left is not None:
        raise DeliveryError(left[0], hint=left[1])


@sends_app.command("list")
def sends_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every send run: edition, segment, status and counts."""
    from newsletter.delivery import list_runs

    with database() as db:
        reports = list_runs(db)
    if not reports and not as_json:
        console.print("no sends yet", markup=False)
        return
    print_reports(reports, as_json)


@sends_app.command("show")
def sends_show(
    run: Annotated[str, typer.Argument(help="A run id, or an edition id for all its segments.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One run (or one edition's runs): audience, accepted, failed, uncertain, excluded, duration,
    and SendGrid's events (delivered, deferred, opens, clicks, bounces, spam reports, unsubscribes)."""
    from newsletter.delivery import event_counts, run_report

    with database() as db:
        reports = run_report(db, run)
        events = event_counts(db, [r.run_id for r in reports if r.run_id is not None])
    if as_json:
        print_json([{**r.as_dict(), "events": events[r.run_id].as_dict() if r.run_id in events else None}
                    for r in reports])
        return
    print_reports(reports, as_json)
    for r in reports:
        counts = events.get(r.run_id) if r.run_id is not None else None
        if counts is None or not any(counts.as_dict().values()):
            continue
        c = counts
        console.print(
            f"{r.segment}: events: processed {c.processed:,}, delivered {c.delivered:,}, deferred {c.deferred:,}, "
            f"opens {c.opens:,} by {c.unique_openers:,} people (+{c.machine_opens:,} machine opens, not counted), "
            f"clicks {c.clicks:,}, bounces {c.bounces:,}, dropped {c.dropped:,}, spam reports {c.spam_reports:,}, "
            f"unsubscribes {c.unsubscribes:,}", markup=False, highlight=False)


@sends_app.command("resume")
def sends_resume(edition: Annotated[str, typer.Argument(help="The paused edition's id, e.g. 2026-12.")]) -> None:
    """Lift the complaint guard's pause of an edition; the next `send` sends its remaining batches."""
    import getpass

    from newsletter.delivery import remaining_recipients, resume_edition

    with database() as db:
        pause = resume_edition(db, edition, actor=f"cli:{getpass.getuser()}")
        left = remaining_recipients(db, edition)
    console.print(Text(f"edition {pause.edition} resumed (it was paused: {pause.reason}); {left:,} recipients "
                       "are waiting: send the edition again to send them"))


@sends_app.command("batches")
def sends_batches(
    run: Annotated[int, typer.Argument(help="The run id (see `sends list`).")],
    state: Annotated[str | None, typer.Option(
        "--state", help="Only batches in this state: pending, in_flight, accepted, failed, uncertain.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The batches of one run: state, recipients, attempts, HTTP status, SendGrid message id, reason."""
    from newsletter.delivery import list_batches

    with database() as db:
        batches = list_batches(db, run, state)
    if as_json:
        print_json([b.as_dict() for b in batches])
        return
    if not batches:
        console.print(f"run {run} has no {state} batches", markup=False)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("batch", "state", "recipients", "attempts", "http", "message id", "reason"):
        table.add_column(column, overflow="fold")
    for b in batches:
        table.add_row(str(b.seq), b.status, f"{b.recipients:,}", str(b.attempts), str(b.response_status or "-"),
                      Text(b.message_id or "-"), Text(b.last_error or ""))
    console.print(table)


@sends_app.command("resolve")
def sends_resolve(
    run: Annotated[int, typer.Argument(help="The run id (see `sends list`).")],
    batch: Annotated[int, typer.Argument(help="The batch number (see `sends batches RUN`).")],
    delivered: Annotated[bool, typer.Option(
        "--delivered", help="The batch reached SendGrid (e.g. seen in its Activity feed): never send it again.")] = False,
    resend: Annotated[bool, typer.Option(
        "--resend", help="The batch did not reach SendGrid: the next `send` sends it again.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the batch audit with your name and the time.")] = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Settle one uncertain (or failed) batch by hand; audited."""
    import getpass

    from newsletter.delivery import get_batch, mark_batch_delivered, requeue_batch

    if delivered == resend:
        raise InputError("say either --delivered or --resend", hint=f"e.g. newsletter sends resolve {run} {batch} --delivered")
    if not reason.strip():
        raise InputError("--reason is required: it is kept in the batch audit",
                         hint='e.g. --reason "seen in the Activity feed at 09:14"')
    with database() as db:
        current = get_batch(db, run, batch)
        what = "mark as delivered (it will never be sent again)" if delivered else "send again at the next `send`"
        if not yes and not typer.confirm(
                f"Batch {batch} of run {run} ({current.recipients:,} recipients, {current.status}): {what}?",
                default=False, err=True):
            raise DeliveryError("cancelled: nothing was changed", hint="pass --yes to skip the question")
        actor = f"cli:{getpass.getuser()}"
        change = (mark_batch_delivered if delivered else requeue_batch)(db, run, batch, actor=actor, reason=reason)
    if not change.changed:
        console.print(f"batch {batch} of run {run} is already {change.new_status}: nothing changed", markup=False)
    elif delivered:
        console.print(f"batch {batch} of run {run}: {change.old_status} → delivered (audited)", markup=False)
    else:
        console.print(f"batch {batch} of run {run}: {change.old_status} → pending (audited); "
                      "the next `send` of this edition sends it", markup=False)


@suppressions_app.command("sync")
def suppressions_sync(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Mark members SendGrid has bounced, blocked, reported as spam, found invalid or unsubscribed."""
    from newsletter.members import SendGridSuppressionClient, sync_suppressions

    cfg = settings()
    if cfg.sendgrid_api_key is None:
        raise NewsletterError("suppressions sync needs SENDGRID_API_KEY", hint="set SENDGRID_API_KEY")
    with database(cfg) as db:
        result = sync_suppressions(db, SendGridSuppressionClient(cfg.sendgrid_api_key.get_secret_value(), cfg.sendgrid_host))
    if as_json:
        print_json(result.as_dict())
        return
    for key, value in result.as_dict().items():
        console.print(f"{key}: {value}", markup=False)
