"""What every command module shares: settings, the database, consoles, JSON output.

Command modules import the stage packages inside their command bodies, so `newsletter --help`
loads only Typer and Rich; the database opens only for commands that use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.db import Database


console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def settings(**overrides: object) -> Settings:
    """The project's settings; keyword overrides come from command-line options (None = not given)."""
    from newsletter.config import load_settings

    return load_settings(**overrides)


@contextmanager
def database(cfg: Settings | None = None) -> Iterator[Database]:
    """The project's database for one command: `with database(cfg) as db: ...` (closed after)."""
    from newsletter.db import open_database

    db = open_database((cfg or settings()).resolved_database_url)
    try:
        yield db
    finally:
        db.dispose()


def print_json(data: object) -> None:
    """Machine-readable output on stdout (no Rich markup or wrapping)."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
