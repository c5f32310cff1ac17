"""CLI commands for articles (`newsletter articles list|import`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from newsletter.cli.common import console, err_console, print_json, settings
from newsletter.errors import InputError

DEFAULT_DIR = "issues/articles"

articles_app = typer.Typer(
    name="articles", help="List article files and import them from RSS/Atom feeds.",
    no_args_is_help=True,
)


def _since(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since {value!r} is not a date", hint="use YYYY-MM-DD, e.g. 2026-11-01") from None


@articles_app.command("list")
def list_articles(
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only articles with this tag (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="Only articles published on or after YYYY-MM-DD.")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Article directory.")] = Path(DEFAULT_DIR),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List articles, newest first."""
    from newsletter.content import filter_articles, load_articles

    cfg = settings()
    folder = cfg.path(directory)
    if not folder.is_dir():
        raise InputError(f"no article directory {folder}", hint="create it or pass --dir")
    articles = filter_articles(load_articles(folder, base=cfg.project_dir), tags=tag, since=_since(since))
    if as_json:
        print_json([a.model_dump(mode="json") for a in articles])
        return
    table = Table(title=f"{len(articles)} article(s)")
    table.add_column("slug", no_wrap=True)
    table.add_column("date", no_wrap=True)
    for column in ("title", "author", "tags", "regions"):
        table.add_column(column, overflow="fold")
    for a in articles:
        table.add_row(
            escape(a.slug), a.published_date.isoformat(), escape(a.title), escape(a.author or ""),
            escape(", ".join(a.tags)), escape(", ".join(a.regions) or "all"),
        )
    console.print(table)


@articles_app.command("new")
def new_article_cmd(
    slug: Annotated[str, typer.Argument(help="File name without .md: lower-case letters, digits, hyphens.")],
    title: Annotated[str, typer.Option(help="The headline (plain text).")],
    url: Annotated[str, typer.Option(help="The canonical 'continue reading' link (absolute https URL).")],
    author: Annotated[str | None, typer.Option(help="Who wrote it.")] = None,
    author_role: Annotated[str | None, typer.Option(help="Their role and organisation.")] = None,
    summary: Annotated[str | None, typer.Option(help="One or two plain-text sentences.")] = None,
    image: Annotated[str | None, typer.Option(help="Absolute https URL of an image.")] = None,
    image_alt: Annotated[str | None, typer.Option(help="What the image shows (for screen readers).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    region: Annotated[list[str] | None, typer.Option(
        "--region", help="A region it is of interest to (repeatable; none = every region).")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Article directory.")] = Path(DEFAULT_DIR),
) -> None:
    """Write a new article file, published now in the project's time zone; then edit its body."""
    from newsletter.content import new_article, zone
    from newsletter.models import utcnow

    cfg = settings()
    now = utcnow().astimezone(zone(cfg.timezone)).replace(microsecond=0)
    path = new_article(cfg.path(directory), slug, title=title, url=url, published=now, author=author,
                       author_role=author_role, summary=summary, image=image, image_alt=image_alt,
                       tags=tuple(tag or ()), regions=tuple(region or ()), base=cfg.project_dir)
    shown = path.relative_to(cfg.project_dir) if path.is_relative_to(cfg.project_dir) else path
    console.print(f"wrote {shown} (published {now.isoformat()}); add it to a manifest's articles", markup=False)


@articles_app.command("import")
def import_articles(
    feed: Annotated[str, typer.Argument(help="RSS 2.0 or Atom feed: a file path or an http(s) URL.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where article files are written.")] = Path(DEFAULT_DIR),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
) -> None:
    """Import a feed's items as article files: one line per item (imported/updated/skipped + reason)."""
    from newsletter.content import import_feed

    cfg = settings()
    outcomes = import_feed(feed, cfg.path(directory), timeout=cfg.request_timeout)
    if as_json:  # feed-wide warnings go with every item: the JSON stays a list of items
        print_json([{**o.as_dict(), "notes": [*o.notes, *outcomes.warnings]} for o in outcomes])
        return
    for warning in outcomes.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    for outcome in outcomes:
        console.print(outcome.line(), markup=False)
        for note in outcome.notes:
            console.print(f"          note: {note}", markup=False)
    counts = {kind: sum(o.outcome == kind for o in outcomes) for kind in ("imported", "updated", "skipped")}
    console.print(", ".join(f"{n} {kind}" for kind, n in counts.items()), markup=False)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(articles_app, name="articles")
