"""What every command module shares: settings, the database, consoles, JSON output.

Command modules import the stage packages inside their command bodies, so `newsletter --help`
loads only Typer and Rich; the database opens only for commands that use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.content import KnownSegments
    from newsletter.db import Database


# emoji=False: user data such as `2026-12:scotland: stale` must not turn into a flag.
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def settings(near: Path | None = None, **overrides: object) -> Settings:
    """The project's settings, found from the working directory or else from `near` (a file the
    command was given); keyword overrides come from command-line options (None = not given)."""
    from newsletter.config import load_settings

    return load_settings(near=near, **overrides)


@contextmanager
def database(cfg: Settings | None = None) -> Iterator[Database]:
    """The project's database for one command: `with database(cfg) as db: ...` (closed after)."""
    from newsletter.db import open_database

    db = open_database((cfg or settings()).resolved_database_url)
    try:
        yield db
    finally:
        db.dispose()


def known_segments(cfg: Settings) -> KnownSegments:
    """The segment names a manifest may use: the stored segments when there is a database (the
    database is their truth), else subscribers/segments.yaml."""
    from newsletter.db import database_exists
    from newsletter.members import defined_segments, stored_defined_segments

    if not database_exists(cfg.resolved_database_url):
        return defined_segments(cfg.project_dir)
    with database(cfg) as db:
        return stored_defined_segments(db, cfg.project_dir)


def manifest_path(cfg: Settings, given: Path) -> Path:
    """A manifest named on the command line: relative to the working directory as usual, or, when
    no such file is there, relative to the project folder (`issues/2026-12.yaml` from anywhere in it)."""
    if given.is_absolute() or given.exists():
        return given
    in_project = cfg.project_dir / given
    return in_project if in_project.exists() else given


def print_json(data: object) -> None:
    """Machine-readable output on stdout (no Rich markup or wrapping)."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
