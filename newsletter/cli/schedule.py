"""CLI: `newsletter schedule MANIFEST`, `schedule list|cancel|move`, `scheduler run`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from newsletter.cli.common import console, database, err_console, manifest_path, print_json, settings

if TYPE_CHECKING:
    import click

    from newsletter.schedule import ScheduledSendInfo

SUBCOMMANDS_HELP = ("--help", "-h")


class ScheduleGroup(TyperGroup):
    """`schedule` is a group (list, cancel, move, add) whose default command is `add`, so
    `newsletter schedule issues/2026-12.yaml` means `newsletter schedule add issues/2026-12.yaml`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in SUBCOMMANDS_HELP:
            args = ["add", *args]
        return super().parse_args(ctx, args)


schedule_app = typer.Typer(
    cls=ScheduleGroup, no_args_is_help=True,
    help="Schedule an edition: `newsletter schedule MANIFEST [--segment S]... [--at TIME]` "
         "(short for `schedule add`); list, cancel or move scheduled sends.",
)
scheduler_app = typer.Typer(no_args_is_help=True, help="Run the scheduler daemon.")

STATE_STYLE = {"scheduled": "cyan", "sending": "yellow", "sent": "green", "missed": "red",
               "cancelled": "dim", "stale": "magenta", "failed": "bold red"}


def _table(infos: list[ScheduledSendInfo]) -> None:
    if not infos:
        console.print("nothing scheduled")
        return
    at_risk = [i for i in infos if i.at_risk]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("edition", "segment", "local time", "UTC", "audience", "state"):
        table.add_column(name, no_wrap=True, justify="right" if name == "audience" else "left")
    table.add_column("note", overflow="fold")
    for i in infos:
        local = i.send_at.astimezone(ZoneInfo(i.zone))
        utc = f"{i.send_at:%H:%M}" if i.send_at.date() == local.date() else f"{i.send_at:%Y-%m-%d %H:%M}"
        state = f"[{STATE_STYLE.get(i.state, '')}]{i.state}[/]"
        note = escape(i.note or "")
        if i.at_risk:
            state = "[bold magenta]at risk[/]"
            note = escape(f"at risk: {i.at_risk.reason}" + (f"; {i.note}" if i.note else ""))
        table.add_row(
            escape(i.edition), escape(i.segment), f"{local:%Y-%m-%d %H:%M %Z}", utc,
            "-" if i.audience is None else str(i.audience), state, note,
        )
    console.print(table)
    for i in at_risk:
        assert i.at_risk is not None
        console.print(f"{i.key} at risk: {i.at_risk.reason}. To do: {i.at_risk.fix}", markup=False)


@schedule_app.command("add")
def add(
    manifest: Annotated[Path, typer.Argument(help="The issue manifest, e.g. issues/2026-12.yaml.")],
    segment: Annotated[list[str] | None, typer.Option(
        "--segment", "-s", help="Only this segment (repeatable). Default: every segment.")] = None,
    at: Annotated[str | None, typer.Option(
        help="Send time for the chosen segments: local '2026-12-03 08:00' (in the manifest's zone) "
             "or with an offset. Default: the manifest's send_at.")] = None,
    window: Annotated[str | None, typer.Option(
        help="Local hours the segment may go out in, e.g. 07:00-20:00.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Let a whole-edition schedule replace times chosen for single segments "
                        "(with --segment --at or `schedule move`).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build, gate and freeze the edition, then put each segment on the clock."""
    from newsletter.schedule import schedule_edition

    cfg = settings(near=manifest)
    with database(cfg) as db:
        infos = schedule_edition(db, cfg, manifest_path(cfg, manifest), segments=segment, at=at, window=window,
                                 force=force)
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    for i in infos:
        console.print(f"scheduled {escape(i.edition)}:{escape(i.segment)} for {i.local_time}"
                      f"{f' (audience now {i.audience})' if i.audience is not None else ''}"
                      f"{f'; {escape(i.note)}' if i.note else ''}")
    console.print("run `newsletter scheduler run` (or keep it running as a service) to send",
                  markup=False)


@schedule_app.command("list")
def list_(
    edition: Annotated[str | None, typer.Option(help="Only this edition.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every scheduled send with its time (local and UTC), audience estimate and state."""
    from newsletter.schedule import list_schedule

    cfg = settings()
    with database(cfg) as db:
        infos = list_schedule(db, cfg, edition=edition)
    if as_json:
        print_json([i.to_json() for i in infos])
    else:
        _table(infos)


@schedule_app.command("cancel")
def cancel(
    edition: Annotated[str, typer.Argument(help="Edition id, e.g. 2026-12.")],
    segment: Annotated[str | None, typer.Option("--segment", "-s", help="Only this segment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cancel an edition's waiting sends (all segments, or one)."""
    from newsletter.schedule import cancel as cancel_sends

    cfg = settings()
    with database(cfg) as db:
        infos = cancel_sends(db, cfg, edition, segment)
    if as_json:
        print_json([i.to_json() for i in infos])
    else:
        _table(infos)


@schedule_app.command("move")
def move(
    edition: Annotated[str, typer.Argument(help="Edition id, e.g. 2026-12.")],
    at: Annotated[str, typer.Option(help="New send time: local '2026-12-03 08:00' (or 8:00) or with an offset.")],
    segment: Annotated[list[str] | None, typer.Option(
        "--segment", "-s", help="A segment to move (repeatable; names and region aliases work).")] = None,
    all_segments: Annotated[bool, typer.Option(
        "--all", help="Every segment of the edition still to go out (scheduled, missed or failed).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Give segments a new send time (also re-arms a missed or failed send, or a cancelled one you name)."""
    from newsletter.schedule import move_sends

    cfg = settings()
    with database(cfg) as db:
        infos = move_sends(db, cfg, edition, at, segments=segment or None, all_segments=all_segments)
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    for i in infos:
        console.print(f"moved {escape(i.edition)}:{escape(i.segment)} to {i.local_time}")


@scheduler_app.command("run")
def run(
    once: Annotated[bool, typer.Option(
        "--once", help="Resume interrupted sends, re-check waiting sends, run the jobs that are due now, "
                       "and exit (1 when a send went stale, was missed or failed, or is at risk).")] = False,
    grace: Annotated[float | None, typer.Option(
        help="Misfire grace in minutes (default: setting misfire_grace_minutes, 30).",
        min=0)] = None,
    poll: Annotated[float, typer.Option(
        help="Seconds between readings of the schedule (new, moved, cancelled sends) and checks "
             "for interrupted sends.", min=0.1)] = 5.0,
) -> None:
    """Send scheduled editions at their times. Stop with Ctrl-C or SIGTERM."""
    from newsletter.schedule import daemon_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = settings()
    with database(cfg) as db:
        daemon = daemon_for(cfg, db, grace_minutes=grace)
        if not once:
            daemon.run(poll_seconds=poll)
            return
        summary = daemon.run_once()
    for line in summary.problems:
        err_console.print(line, markup=False)
    if summary.problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(scheduler_app, name="scheduler")
