"""CLI: `newsletter digests list|show|run|approve|skip` (recurring digests, newsletter.schedule)."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from newsletter.cli.common import console, database, err_console, print_json, settings
from newsletter.errors import InputError

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.db import Database
    from newsletter.schedule import DryRun, OccurrenceInfo

digests_app = typer.Typer(
    no_args_is_help=True,
    help="Recurring digests (issues/digests/<name>.yaml): list them, run one now, approve or skip an occurrence.",
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(digests_app, name="digests")


def _history_db(cfg: Settings) -> Database | None:
    """The database when there is one (a read-only command on a fresh clone creates none)."""
    from newsletter.db import database_exists, open_database

    return open_database(cfg.resolved_database_url) if database_exists(cfg.resolved_database_url) else None


@digests_app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every digest: its recurrence, policy, next occurrence and last one. Exit 2 when a
    definition has problems (they are listed as file:line:col)."""
    from newsletter.content import describe
    from newsletter.schedule import list_digests

    cfg = settings()
    db = _history_db(cfg)
    try:
        infos = list_digests(db, cfg)
    finally:
        if db is not None:
            db.dispose()
    if as_json:
        print_json([i.to_json() for i in infos])
    elif not infos:
        console.print("no digests: add issues/digests/<name>.yaml (see README, Recurring digests)", markup=False)
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for column in ("digest", "recurrence", "policy", "next", "last"):
            table.add_column(column, overflow="fold")
        for i in infos:
            d = i.digest
            if d is None:
                table.add_row(Text(i.name), Text(f"{len(i.problems)} problem(s) in {i.file}", style="red"), "", "", "")
                continue
            last = f"{i.last.occurs_on} {i.last.status}" if i.last else "-"
            table.add_row(Text(i.name), Text(d.recurrence_text), Text(d.policy),
                          Text(describe(i.next_send, d.zone) if i.next_send else "-"), Text(last))
        console.print(table)
    problems = [p for i in infos for p in i.problems]
    for problem in problems:
        err_console.print(problem, markup=False)
    if any(i.digest is None for i in infos):
        raise InputError(f"{sum(i.digest is None for i in infos)} digest definition(s) have problems",
                         hint="fix the lines above; a digest with problems does not run")


def _occurrence_lines(o: OccurrenceInfo) -> list[str]:
    lines = [f"{o.digest} {o.occurs_on}: {o.status} (sends at {o.local_time})"]
    if o.reason:
        lines.append(f"  {o.reason}")
    if o.manifest_path:
        lines.append(f"  manifest: {o.manifest_path} ({len(o.articles)} articles)")
    if o.review_deadline and o.state == "awaiting_review":
        lines.append(f"  review: {o.preview}  (approve by {o.review_deadline_text})")
        lines.append(f"  newsletter digests approve {o.digest} {o.occurs_on}  |  "
                     f"newsletter digests skip {o.digest} {o.occurs_on} --reason ...")
    for problem in o.feed_problems:
        lines.append(f"  {problem}")
    if o.sends:
        lines.append("  sends: " + ", ".join(f"{s} {state}" for s, state in o.sends.items()))
    return lines


@digests_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="The digest's name (its file name without .yaml).")],
    limit: Annotated[int, typer.Option(help="Occurrences to show.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A digest's definition (or its problems) and its latest occurrences."""
    from newsletter.schedule import digest_detail

    cfg = settings()
    db = _history_db(cfg)
    try:
        info, occurrences = digest_detail(db, cfg, name, limit=limit)
    finally:
        if db is not None:
            db.dispose()
    if as_json:
        print_json({**info.to_json(), "occurrences": [o.to_json() for o in occurrences]})
    else:
        d = info.digest
        if d is not None:
            console.print(f"{d.name}: {d.recurrence_text}; {d.policy}"
                          f"{f' (deadline {d.deadline})' if d.policy == 'review' else ''}; prepared {d.prepare_before} "
                          f"before; feeds: {', '.join(d.feeds)}; segments: {', '.join(d.segments)}", markup=False)
        for o in occurrences:
            for line in _occurrence_lines(o):
                console.print(line, markup=False)
        if d is not None and not occurrences:
            console.print("no occurrences yet", markup=False)
    for problem in info.problems:
        err_console.print(problem, markup=False)
    if info.digest is None:
        raise InputError(f"{info.file} has problems", hint="fix the lines above; a digest with problems does not run")


def _print_dry_run(result: DryRun) -> None:
    console.print(f"digest {result.digest}, {result.occurs_on}: dry run, nothing written", markup=False)
    console.print(f"feeds: {result.items} item(s) read", markup=False)
    for line in (*result.feed_problems, *result.notes):
        console.print(f"  {line}", markup=False)
    console.print(f"new articles: {len(result.new)}", markup=False)
    for slug, title, regions in result.new:
        console.print(f"  {slug}  {title}" + (f"  [{', '.join(regions)}]" if regions else ""), markup=False)
    if result.skip_reason:
        console.print(f"would be skipped: {result.skip_reason}", markup=False)
        return
    for segment, slugs in result.segments.items():
        console.print(f"  {segment}: {len(slugs)}: {', '.join(slugs)}", markup=False)
    console.print(f"manifest issues/{result.digest}-{result.occurs_on}.yaml would be:", markup=False)
    console.print(result.manifest_text or "", markup=False)
    console.print(f"check: {result.check or 'passed'}", markup=False)
    if result.gates:
        console.print("gates: " + ", ".join(f"{s} {g}" for s, g in result.gates.items()), markup=False)


@digests_app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="The digest's name.")],
    now: Annotated[bool, typer.Option("--now", help="Run today's occurrence now instead of at its time.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Read the feeds and build in a scratch copy; change nothing, send nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Prepare today's occurrence now: import the feeds, write and check the manifest, then
    schedule it (auto) or ask for a review. With --dry-run nothing is written anywhere."""
    from newsletter.errors import GateFailed
    from newsletter.schedule import dry_run_digest, run_digest_now

    if not now:
        raise InputError("say --now: it runs today's occurrence at once (the daemon runs the others at their time)",
                         hint=f"newsletter digests run {name} --now --dry-run")
    cfg = settings()
    if dry_run:
        db = _history_db(cfg)
        try:
            result = dry_run_digest(db, cfg, name)
        finally:
            if db is not None:
                db.dispose()
        if as_json:
            print_json(result.to_json())
        else:
            _print_dry_run(result)
        if result.check:
            raise GateFailed(f"the manifest would not pass: {result.check}")
        return
    with database(cfg) as db:
        info = run_digest_now(db, cfg, name)
    if as_json:
        print_json(info.to_json())
    else:
        for line in _occurrence_lines(info):
            console.print(line, markup=False)
    if info.state == "failed":
        raise InputError(f"digest {name} {info.occurs_on} failed: {info.reason}")


def _decide(name: str, day: str, action: str, reason: str, as_json: bool) -> None:
    from newsletter.schedule import approve_occurrence, skip_occurrence

    cfg = settings()
    actor = f"cli:{getpass.getuser()}"
    with database(cfg) as db:
        if action == "approve":
            info = approve_occurrence(db, cfg, name, day, actor)
        else:
            info = skip_occurrence(db, cfg, name, day, actor, reason)
    if as_json:
        print_json(info.to_json())
        return
    for line in _occurrence_lines(info):
        console.print(line, markup=False)
    if action == "approve":
        console.print("the scheduler sends it at its time (`newsletter scheduler run`)", markup=False)


@digests_app.command("approve")
def approve_command(
    name: Annotated[str, typer.Argument(help="The digest's name.")],
    day: Annotated[str, typer.Argument(metavar="DATE", help="The occurrence's date, e.g. 2026-12-01.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Approve an occurrence waiting for review: it is built from its manifest (as it is now) and
    scheduled for its time. Refused after its deadline."""
    _decide(name, day, "approve", "", as_json)


@digests_app.command("skip")
def skip_command(
    name: Annotated[str, typer.Argument(help="The digest's name.")],
    day: Annotated[str, typer.Argument(metavar="DATE", help="The occurrence's date, e.g. 2026-12-01.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the occurrence).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Skip an occurrence waiting for review, or one scheduled that has not started going out."""
    _decide(name, day, "skip", reason, as_json)
