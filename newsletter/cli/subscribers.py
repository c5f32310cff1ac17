"""CLI commands for the subscribers area: `newsletter subscribers …` and `newsletter segments …`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from newsletter.cli.common import (
    console,
    database,
    err_console,
    print_json,
    settings,
)
from newsletter.errors import InputError, SegmentError

if TYPE_CHECKING:
    from newsletter.db import Database
    from newsletter.members import SegmentSet, SubscriberDetails

subscribers_app = typer.Typer(help="Members: import, export, admin and GDPR requests.",
                              no_args_is_help=True)
segments_app = typer.Typer(help="Segments: stored in the database, seeded from subscribers/segments.yaml.",
                            no_args_is_help=True)

LARGE_FILE_BYTES = 1 << 20
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
EmailArg = Annotated[str, typer.Argument(help="The member's email address.")]
FirstOpt = Annotated[str | None, typer.Option("--first-name")]
LastOpt = Annotated[str | None, typer.Option("--last-name")]
OrgOpt = Annotated[str | None, typer.Option("--organisation")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="Region slug or alias.")]
TypeOpt = Annotated[str | None, typer.Option("--member-type")]
AttrOpt = Annotated[list[str] | None, typer.Option("--attr", help="KEY=VALUE free attribute (repeatable).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")]


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _details(first: str | None, last: str | None, org: str | None, region: str | None,
             member_type: str | None, attrs: list[str] | None) -> SubscriberDetails:
    from newsletter import members

    return members.SubscriberDetails(first, last, org, region, member_type, _pairs(attrs, "--attr"))


def _shown(value: object) -> str:
    """User data for a Rich table: no markup, no control characters."""
    from newsletter import members

    return escape(members.display_text(value))


def _warn_controls(details: SubscriberDetails) -> None:
    from newsletter import members

    for name in details.controls_removed():
        err_console.print(f"warning: removed control characters from {members.display_text(name)}",
                          markup=False)


def _show_record(record: dict[str, object]) -> None:
    table = Table(show_header=False, box=None)
    for key, value in record.items():
        table.add_row(escape(key), _shown(value))
    console.print(table)


# ---------------------------------------------------------------- subscribers


@subscribers_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="CSV or XLSX file of members.")],
    source: Annotated[str | None, typer.Option(help="Name of the source (audit log, consent).")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="COLUMN=field (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything, write nothing.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Write every rejected row, and every changed field (old → new), to this CSV file.")] = None,
    overwrite_manual: Annotated[bool, typer.Option(
        "--overwrite-manual", help="Also replace values a person set (by default an import keeps them).")] = False,
    dates: Annotated[str, typer.Option(
        help="How slashed dates are written: dmy (31/01/2024, the default) or mdy (01/31/2024).")] = "dmy",
    json_: JsonOpt = False,
) -> None:
    """Import members from a spreadsheet (safe to re-run: nothing changes the second time).

    Values an admin or the member set are kept unless --overwrite-manual; the report lists them."""
    from newsletter import members

    if dates not in ("dmy", "mdy"):
        raise InputError(f"--dates {dates!r}: use dmy (31/01/2024) or mdy (01/31/2024)")
    progress: Progress | None = None
    task = None
    if not json_ and file.is_file() and file.stat().st_size > LARGE_FILE_BYTES:
        progress = Progress("importing", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                            console=err_console, transient=True)
        progress.start()
        task = progress.add_task("import", total=file.stat().st_size)
    try:
        with database() as db:
            result = members.import_file(
                db, file, source=source, mapping=_pairs(map_, "--map"), dry_run=dry_run, report_path=report,
                overwrite_manual=overwrite_manual, date_order="mdy" if dates == "mdy" else "dmy",
                progress=(lambda done, total: progress.update(task, completed=done)) if progress else None,
            )
    finally:
        if progress:
            progress.stop()
    if json_:
        print_json({**result.counts(), "kept_manual": result.kept_manual, "dry_run": dry_run,
                    "warnings": result.warnings,
                    "rejects": [{"row": r.row, "reason": r.reason} for r in result.rejects],
                    "changes": [{"row": c.row, "email": c.email, "kept": c.kept,
                                 "fields": [{"field": f.field, "old": f.old, "new": f.new} for f in c.changes]}
                                for c in result.changes]})
        return
    for warning in result.warnings:
        err_console.print(f"warning: {members.display_text(warning)}", markup=False)
    table = Table(title="dry run: nothing written" if dry_run else f"imported {escape(file.name)}")
    for name in result.counts():
        table.add_column(name, justify="right")
    table.add_row(*(str(v) for v in result.counts().values()))
    console.print(table)
    for reject in result.rejects[:20]:
        console.print(f"row {reject.row}: {members.display_text(reject.reason)}", markup=False)
    if result.rejected > 20:
        console.print(f"… and {result.rejected - 20} more rejected rows", markup=False)
    for change in result.changes[:20]:
        console.print(f"row {change.row}: {members.display_text(change.email)}: "
                      f"{members.display_text(change.describe())}", markup=False)
    if len(result.changes) > 20:
        console.print("… and more changes (--report FILE lists them all)", markup=False)
    if (result.rejected or result.changes) and report:
        console.print(f"rejected rows and changes written to {report}", markup=False)


@subscribers_app.command("export")
def export_cmd(
    segment: Annotated[str | None, typer.Option(help="Only this segment's audience.")] = None,
    format_: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
) -> None:
    """Export members (never erased ones). CSV cells that look like formulas are escaped."""
    from newsletter import members

    if format_ not in ("csv", "json"):
        raise InputError(f"--format {format_!r}: use csv or json")
    cfg = settings()
    where = None
    stream = members.open_output(out) if out else sys.stdout  # before any work: a bad path fails fast
    try:
        with database(cfg) as db, db.session() as session:
            if segment:
                seg = members.load_segment_set(db, cfg.project_dir)
                where = members.audience_clause(seg, members.resolve_segment(segment, seg.names, where="in the segments"))
            writer = members.write_csv if format_ == "csv" else members.write_json
            count = writer(members.iter_export(session, where), stream)
    finally:
        if out:
            stream.close()
    if out:
        err_console.print(f"exported {count} members to {out}", markup=False)


@subscribers_app.command("add")
def add_cmd(email: EmailArg, first_name: FirstOpt = None, last_name: LastOpt = None,
            organisation: OrgOpt = None, region: RegionOpt = None, member_type: TypeOpt = None,
            attr: AttrOpt = None,
            consent_source: Annotated[str | None, typer.Option(help="Where consent was given.")] = None,
            consent_version: Annotated[str | None, typer.Option(help="Consent wording version.")] = None,
            json_: JsonOpt = False) -> None:
    """Add one member (active, consent recorded now)."""
    from newsletter import members

    details = _details(first_name, last_name, organisation, region, member_type, attr)
    with database() as db:
        with db.write_session() as session:
            sub = members.add_subscriber(session, email, details, consent_source=consent_source,
                                             consent_version=consent_version)
            record = members.subscriber_record(sub)
    _warn_controls(details)
    if json_:
        print_json(record)
    else:
        console.print(f"added {record['email']}", markup=False)


@subscribers_app.command("update")
def update_cmd(email: EmailArg, first_name: FirstOpt = None, last_name: LastOpt = None,
               organisation: OrgOpt = None, region: RegionOpt = None, member_type: TypeOpt = None,
               attr: AttrOpt = None) -> None:
    """Change a member's details (never the status)."""
    from newsletter import members

    details = _details(first_name, last_name, organisation, region, member_type, attr)
    with database() as db:
        with db.write_session() as session:
            changed = members.update_subscriber(session, email, details)
    _warn_controls(details)
    console.print("changed: " + ", ".join(sorted(changed)) if changed else "nothing changed", markup=False)


@subscribers_app.command("change-email")
def change_email_cmd(old: Annotated[str, typer.Argument(help="The member's current address.")],
                     new: Annotated[str, typer.Argument(help="The new address.")]) -> None:
    """Change a member's address (history, consent and segment stay; audited)."""
    from newsletter import members

    with database() as db:
        with db.write_session() as session:
            sub = members.change_email(session, old, new)
            shown = sub.email
    console.print(f"{members.display_text(old)}: now {members.display_text(shown)}", markup=False)


@subscribers_app.command("list")
def list_members_cmd(
    search: Annotated[str | None, typer.Option(help="Text in the address, name or organisation (any case).")] = None,
    region: RegionOpt = None,
    status: Annotated[str | None, typer.Option(
        help="active, unsubscribed, bounced, complained or erased (default: all but erased).")] = None,
    limit: Annotated[int, typer.Option(help="Members per page.", min=1, max=10_000)] = 50,
    offset: Annotated[int, typer.Option(help="Members to skip (the next page starts at offset + limit).", min=0)] = 0,
    json_: JsonOpt = False,
) -> None:
    """Find members by address, name or organisation, region and status."""
    from newsletter import members

    with database() as db:
        with db.session() as session:
            page = members.search_subscribers(session, text=search, region=region, status=status,
                                              limit=limit, offset=offset)
    if json_:
        print_json({"total": page.total, "offset": page.offset, "members": list(page.records)})
        return
    table = Table("email", "name", "organisation", "region", "type", "status",
                  title=f"{page.total} member{'s' if page.total != 1 else ''}"
                  + (f" (showing {offset + 1}–{offset + len(page.records)})" if page.total > len(page.records) else ""))
    for m in page.records:
        full = " ".join(str(p) for p in (m["first_name"], m["last_name"]) if p)
        table.add_row(*(_shown(v) for v in (m["email"], full, m["organisation"], m["region"],
                                            m["member_type"], m["status"])))
    console.print(table)


@subscribers_app.command("show")
def show_cmd(email: EmailArg, json_: JsonOpt = False) -> None:
    """Show one member."""
    from newsletter import members

    with database() as db:
        with db.session() as session:
            record = members.subscriber_record(members.find_subscriber(session, email))
    if json_:
        print_json(record)
    else:
        _show_record(record)


def _status_change(email: str, action: str, reason: str | None) -> None:
    from newsletter import members

    with database() as db:
        with db.write_session() as session:
            if action == "unsubscribe":
                changed = members.unsubscribe(session, email, reason=reason or "admin request")
            else:
                changed = members.resubscribe(session, email, reason=reason or "admin request")
    word = "unsubscribed" if action == "unsubscribe" else "resubscribed"
    console.print(f"{email}: {word}" if changed else f"{email}: already {word}", markup=False)


@subscribers_app.command("unsubscribe")
def unsubscribe_cmd(email: EmailArg, reason: ReasonOpt = None) -> None:
    """Stop all mail to a member (kept, with an audit row)."""
    _status_change(email, "unsubscribe", reason)


@subscribers_app.command("resubscribe")
def resubscribe_cmd(email: EmailArg, reason: ReasonOpt = None) -> None:
    """Make a member active again (records fresh consent; imports never do this)."""
    _status_change(email, "resubscribe", reason)


@subscribers_app.command("pause")
def pause_cmd(email: EmailArg,
              months: Annotated[int, typer.Option(help="1, 3 or 6 months.")] = 1) -> None:
    """Send a member no edition for 1, 3 or 6 months (they stay subscribed)."""
    from newsletter.members import find_subscriber, pause_member

    with database() as db:
        with db.write_session() as session:
            until = pause_member(session, find_subscriber(session, email), months, actor="cli")
    console.print(f"{email}: paused until {until.date().isoformat()}", markup=False)


@subscribers_app.command("resume")
def resume_cmd(email: EmailArg) -> None:
    """End a member's pause now."""
    from newsletter.members import find_subscriber, resume_member

    with database() as db:
        with db.write_session() as session:
            ended = resume_member(session, find_subscriber(session, email), actor="cli")
    console.print(f"{email}: pause ended" if ended else f"{email}: was not paused", markup=False)


@subscribers_app.command("erase")
def erase_cmd(email: EmailArg,
              yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
              reason: ReasonOpt = None) -> None:
    """GDPR erasure: delete the member's personal data; keep only a salted hash for suppression."""
    from newsletter import members

    if not yes and not typer.confirm(f"Erase all personal data of {email}? This cannot be undone"):
        raise typer.Abort()
    with database() as db:
        with db.write_session() as session:
            members.erase(session, email, reason=reason or "GDPR erasure request")
    console.print(f"{email}: erased (address suppressed by salted hash)", markup=False)


@subscribers_app.command("access")
def access_cmd(email: EmailArg,
               out: Annotated[Path | None, typer.Option(help="Write the JSON to this file.")] = None) -> None:
    """GDPR access request: everything held about a member, as JSON."""
    from newsletter import members

    with database() as db:
        with db.session() as session:
            data = members.access(session, email)
    if out:
        import json

        with members.open_output(out) as stream:
            stream.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        err_console.print(f"wrote {out}", markup=False)
    else:
        print_json(data)


# ---------------------------------------------------------------- segments


FileOpt = Annotated[Path | None, typer.Option("--file", help="Segments file (default subscribers/segments.yaml).")]
ReadOpt = Annotated[Path | None, typer.Option(
    "--file", help="Read this segments file instead of the stored segments (the database).")]


def _segments(file: Path | None, db: Database) -> SegmentSet:
    from newsletter import members

    if file is not None:
        return members.load_segments(file)
    return members.load_segment_set(db, settings().project_dir)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@segments_app.command("apply")
def apply_cmd(file: Annotated[Path, typer.Argument(help="A segments file (the segments.yaml format).")]) -> None:
    """Make the file's segments the stored ones (created, changed, deleted; each change a new
    version naming you). Nothing changes when the file has a problem."""
    from newsletter import members

    with database() as db:
        result = members.apply_segments(db, file, actor=_actor())
    for label, names in (("created", result.created), ("updated", result.updated), ("deleted", result.deleted)):
        if names:
            console.print(f"{label}: {escape(', '.join(names))}")
    console.print(f"{file}: {len(result.created)} created, {len(result.updated)} updated, {len(result.deleted)} deleted, "
                  f"{len(result.unchanged)} unchanged", markup=False)


@segments_app.command("export")
def export_segments_cmd(out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None) -> None:
    """The stored segments as a segments.yaml (`segments apply` reads it back to the same rules)."""
    from newsletter import members

    cfg = settings()
    with database(cfg) as db:
        text = members.export_segments(db, cfg.project_dir)
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text, "utf-8")
    err_console.print(f"wrote {out}", markup=False)


@segments_app.command("history")
def history_cmd(name: Annotated[str | None, typer.Argument(help="One segment (default: all).")] = None,
                json_: JsonOpt = False) -> None:
    """Every stored version of the segments: when, who, what the rule was."""
    from newsletter import members

    with database() as db:
        changes = members.segment_history(db, name)
    if json_:
        print_json([{**c.__dict__, "at": c.at.isoformat()} for c in changes])
        return
    table = Table("when (UTC)", "segment", "version", "change", "by", "rule")
    for c in changes:
        table.add_row(f"{c.at:%Y-%m-%d %H:%M}", escape(c.name), str(c.version), c.action, escape(c.actor),
                      escape(" ".join((c.rule or "").split())))
    console.print(table)


@segments_app.command("check")
def check_cmd(file: FileOpt = None) -> None:
    """Check a segments file (before `segments apply`); errors name file:line:col."""
    from newsletter import members

    path = file or members.default_path(settings().project_dir)
    problems = members.check_segments(path)
    if problems:
        raise SegmentError(problems, f"{path}: {len(problems)} problem(s)")
    seg = members.load_segments(path)
    console.print(f"{path}: {len(seg.names)} segments, ok", markup=False)


@segments_app.command("list")
def list_cmd(file: ReadOpt = None, json_: JsonOpt = False) -> None:
    """Each segment: name, rule, and how many active members it would send to."""
    from newsletter import members

    with database() as db:
        seg = _segments(file, db)
        with db.session() as session:
            rows = members.segment_counts(session, seg)
    if json_:
        print_json(rows)
        return
    table = Table("segment", "rule", "members")
    for row in rows:
        table.add_row(escape(row["name"]), escape(row["rule"]), str(row["count"]))
    console.print(table)


@segments_app.command("show")
def show_segment_cmd(name: Annotated[str, typer.Argument(help="Segment name.")],
                     limit: Annotated[int, typer.Option(help="Members to list.")] = 50,
                     file: ReadOpt = None, json_: JsonOpt = False) -> None:
    """A segment's rule, member count and first members."""
    from newsletter import members

    with database() as db:
        seg = _segments(file, db)
        name = members.resolve_segment(name, seg.names, where="in the segments")
        with db.session() as session:
            count = members.count_members(session, seg, name)
            members = [members.subscriber_record(s)
                       for s in members.segment_members(session, seg, name, limit)]
    data = {"name": name, "rule": seg.summary(name), "count": count, "members": members}
    if json_:
        print_json(data)
        return
    console.print(f"{escape(name)}: {escape(data['rule'])} — {count} members")
    table = Table("email", "name", "organisation", "region", "type")
    for m in members:
        full = " ".join(p for p in (m["first_name"], m["last_name"]) if p)
        table.add_row(*(_shown(v) for v in (m["email"], full, m["organisation"], m["region"],
                                            m["member_type"])))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(subscribers_app, name="subscribers")
    app.add_typer(segments_app, name="segments")
