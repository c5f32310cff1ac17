"""CLI commands for the editions area: `check`, `preview` (and `build`, `demo`).

Thin: parse options, call newsletter.content.manifest / newsletter.render.build / newsletter.render.preview, print.
User text is printed with print() (no Rich markup), so it is never interpreted.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.common import manifest_path, settings
from newsletter.errors import GateFailed, InputError, NewsletterError

if TYPE_CHECKING:
    from rich.table import Table

    from newsletter.config import Settings
    from newsletter.render import Build


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("check")(check_command)
    app.command("preview")(preview_command)
    app.command("build")(build_command)
    app.command("demo")(demo_command)


def _print_gate_results(result: Build) -> None:
    """Print each variant's gate results."""
    for v in result.variants:
        print(f"{v.segment}: {'FAIL' if v.gates.failed else 'ok'} ({v.size} bytes)")
        for item in v.gates.failed:
            print(f"  FAIL: {item}")
        for item in v.gates.warnings:
            print(f"  warning: {item}")


def check_command(
    manifest: Annotated[Path, typer.Argument(help="The issue manifest, e.g. issues/2026-12.yaml.")],
) -> None:
    """List every problem in a manifest (file:line:col), then build it and run the gates.

    Exit 0 when nothing fails, 2 for manifest problems, 1 when a built email fails a gate."""
    from newsletter.cli.common import known_segments
    from newsletter.content import check_manifest
    from newsletter.render import BuildGateFailed, build_edition

    cfg = settings(near=manifest)
    manifest = manifest_path(cfg, manifest)
    known = known_segments(cfg)
    problems = check_manifest(manifest, cfg, known)
    for problem in problems:
        print(str(problem))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        files = sorted({p.file for p in errors})
        where = "the manifest" if files == [str(manifest)] else ", ".join(files)
        raise InputError(f"{manifest}: {len(errors)} problem{'s' if len(errors) != 1 else ''} in {where}; "
                         "nothing built", hint="fix the lines above and run check again")
    print(f"{manifest}: manifest OK")
    with tempfile.TemporaryDirectory(prefix="newsletter-check-") as tmp:
        try:
            result = build_edition(manifest, cfg, out_dir=Path(tmp) / "build", segments=known)
        except BuildGateFailed as failed:
            _print_gate_results(failed.result)
            raise
    _print_gate_results(result)
    print("gates: all passed")
    _print_edition_coverage(cfg, [v.segment for v in result.variants])


def _print_edition_coverage(cfg: Settings, edition_segments: list[str]) -> None:
    """Who the edition would reach today, when there is a member database to ask."""
    from newsletter.cli.common import database
    from newsletter.cli.sends import print_coverage
    from newsletter.db import database_exists
    from newsletter.errors import NotFound
    from newsletter.members import coverage, load_segment_set

    if not database_exists(cfg.resolved_database_url):
        print("coverage: not checked (no member database yet)")
        return
    with database(cfg) as db:
        try:
            segment_set = load_segment_set(db, cfg.project_dir)
        except NotFound:
            print("coverage: not checked (no segments defined yet)")
            return
        with db.session() as session:
            reach = coverage(session, segment_set, edition_segments)
    for s in reach.segments:
        print(f"{s.segment}: {s.audience:,} active member{'s' if s.audience != 1 else ''} today")
    print_coverage(reach)


def preview_command(
    manifest: Annotated[Path, typer.Argument(help="The issue manifest, e.g. issues/2026-12.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the preview page.")] = Path(
        "preview.html"
    ),
    serve: Annotated[bool, typer.Option("--serve", help="Serve the page on localhost until Ctrl-C.")] = False,
    port: Annotated[int, typer.Option("--port", help="Port for --serve (0 = any free port).")] = 0,
) -> None:
    """Build every variant and write one static preview page (600 px and 375 px, inbox line, text).

    Variants appear side by side, each with its inbox line (from, subject, preheader), gate results
    and plain-text part. With --serve the page is served on 127.0.0.1 until Ctrl-C."""
    from newsletter.cli.common import known_segments
    from newsletter.render import build_edition, serve_preview, write_preview

    cfg = settings(near=manifest)
    with tempfile.TemporaryDirectory(prefix="newsletter-preview-") as tmp:
        build_dir = Path(tmp) / "build"
        failure: NewsletterError | None = None
        try:
            build_edition(manifest, cfg, out_dir=build_dir, segments=known_segments(cfg))
        except GateFailed as exc:  # still worth previewing: the page shows which gate failed
            if not (build_dir / "build.json").is_file():
                raise
            failure = exc
        scheduled = _scheduled_lines(cfg, build_dir)
        path = write_preview(build_dir, out, scheduled=scheduled)
    print(f"preview written: {path}")
    for segment, line in scheduled.items():
        print(f"{segment}: {line}")
    if failure is not None and not serve:
        raise failure
    if failure is not None:
        print(f"warning: {failure.message}")
    if not serve:
        return
    url, server = serve_preview(path, port)
    print(f"serving {url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.shutdown()
        server.server_close()


def _scheduled_lines(cfg: Settings, build_dir: Path) -> dict[str, str]:
    """Per segment, when the schedule says it goes out (the preview shows that rather than the
    manifest's send_at, which a `schedule move` may have changed); empty without a database."""
    from newsletter.cli.common import database
    from newsletter.db import database_exists
    from newsletter.render import load_build
    from newsletter.schedule import scheduled_times

    if not (build_dir / "build.json").is_file() or not database_exists(cfg.resolved_database_url):
        return {}
    edition = load_build(build_dir, for_sending=False).record.edition
    with database(cfg) as db:
        sends = scheduled_times(db, edition)
    return {segment: f"scheduled for {send.local_time} ({send.state})" for segment, send in sends.items()}


def _build_table(result: Build) -> Table:
    """A Rich table of a build: variant, articles, size, gates, paths (no markup in data)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    folder = result.out_dir
    base = Path.cwd()
    shown = folder.relative_to(base) if folder.is_relative_to(base) else folder
    table = Table(title=Text(f"{result.edition_id}: {result.title}"), title_justify="left",
                  caption=Text(f"files in {shown}/"), caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column, justify in (("variant", "left"), ("articles", "right"), ("size", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("gates", overflow="fold")
    table.add_column("files", no_wrap=True)
    for v in result.variants:
        gates = v.gates.summary()
        if v.gates.failed:
            gates += ": " + "; ".join(v.gates.failed)
        style = "red" if v.gates.failed else ("yellow" if v.gates.warnings else "green")
        table.add_row(
            Text(v.segment), str(len(v.articles)), f"{v.size / 1000:.1f} KB", Text(gates, style=style),
            Text(f"{v.html_file} .txt .eml"),
        )
    return table


def build_command(
    manifest: Annotated[Path, typer.Argument(help="The issue manifest, e.g. issues/2026-12.yaml.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory (default: build/<edition>).")
    ] = None,
) -> None:
    """Build every segment's email: DIR/<segment>.html, .txt, .eml and DIR/build.json.

    Exit 1 when any variant fails a quality gate (the files are still written)."""
    from newsletter.cli.common import console, known_segments
    from newsletter.render import BuildGateFailed, build_edition

    try:
        cfg = settings(near=manifest)
        manifest = manifest_path(cfg, manifest)
        result = build_edition(manifest, cfg, out_dir=out, segments=known_segments(cfg))
    except BuildGateFailed as exc:
        console.print(_build_table(exc.result))
        raise
    console.print(_build_table(result))
    console.print(f"wrote {len(result.variants)} variants and build.json to {result.out_dir}", markup=False)


def demo_command() -> None:
    """Offline tour: build the sample edition, import members, send to the outbox, schedule.

    Builds issues/2026-12.yaml into build/2026-12/, imports subscribers/sample.csv, sends every
    variant to the outbox, then schedules the edition and cancels it again. Its database and
    outbox live under build/demo/ and start afresh on each run."""
    from rich.table import Table
    from rich.text import Text

    from newsletter.cli.common import console
    from newsletter.cli.demo import run_demo
    from newsletter.cli.sends import print_reports

    report = run_demo(settings())
    if report.build is not None:
        console.print(_build_table(report.build))
    if report.import_counts:
        counts = ", ".join(f"{v} {k}" for k, v in report.import_counts.items())
        console.print(f"\nimported subscribers/sample.csv: {counts}", markup=False)
    if report.segment_counts:
        table = Table(title="segments (subscribers/segments.yaml)", title_justify="left")
        for column in ("segment", "rule", "members"):
            table.add_column(column, justify="right" if column == "members" else "left")
        for row in report.segment_counts:
            table.add_row(Text(row["name"]), Text(row["rule"]), str(row["count"]))
        console.print(table)
    if report.send_reports:
        print_reports(list(report.send_reports), as_json=False, after_send=True)
        console.print(f"outbox: {report.outbox_dir}", markup=False)
    for note in report.notes:
        console.print(note, markup=False)
