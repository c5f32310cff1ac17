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

from newsletter.cli.common import console, database, manifest_path, print_json, settings

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
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("edition", "segment", "local time", "UTC", "audience", "state"):
        table.add_column(name, no_wrap=True, justify="right" if name == "audience" else "left")
    table.add_column("note", overflow="fold")
    for i in infos:
        local = i.send_at.astimezone(ZoneInfo(i.zone))
        utc = f"{i.send_at:%H:%M}" if i.send_at.date() == local.date() else f"{i.send_at:%Y-%m-%d %H:%M}"
        table.add_row(
            escape(i.edition), escape(i.segment), f"{local:%Y-%m-%d %H:%M %Z}", utc,
            "-" if i.audience is None else str(i.audience),
            f"[{STATE_STYLE.get(i.state, '')}]{i.state}[/]", escape(i.note or ""),
        )
    console.print(table)


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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build, gate and freeze the edition, then put each segment on the clock."""
    from newsletter.schedule import schedule_edition

    cfg = settings(near=manifest)
    with database(cfg) as db:
        infos = schedule_edition(db, cfg, manifest_path(cfg, manifest), segments=segment, at=at, window=window)
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    for i in infos:
        console.print(f"scheduled {escape(i.edition)}:{escape(i.segment)} for {i.local_time}"
                      f"{f' (audience now {i.audience})' if i.audience is not None else ''}")
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
    segment: Annotated[str, typer.Option("--segment", "-s", help="The segment to move.")],
    at: Annotated[str, typer.Option(help="New send time (local or with an offset).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Give one segment a new send time (also re-arms a missed, cancelled or failed send)."""
    from newsletter.schedule import move as move_send

    cfg = settings()
    with database(cfg) as db:
        info = move_send(db, cfg, edition, segment, at)
    if as_json:
        print_json(info.to_json())
    else:
        console.print(f"moved {escape(edition)}:{escape(segment)} to {info.local_time}")


@scheduler_app.command("run")
def run(
    once: Annotated[bool, typer.Option(
        "--once", help="Resume interrupted sends, run the jobs that are due now, and exit.")] = False,
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
        if once:
            daemon.run_once()
        else:
            daemon.run(poll_seconds=poll)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(scheduler_app, name="scheduler")
