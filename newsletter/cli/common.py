"""What every command module shares: settings, the database, consoles, JSON output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from newsletter.config import Settings, load_settings
from newsletter.db import Database, open_database

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


@contextmanager
def database(cfg: Settings | None = None) -> Iterator[Database]:
    """The project's database for one command: `with database(cfg) as db: ...` (closed after)."""
    db = open_database((cfg or settings()).resolved_database_url)
    try:
        yield db
    finally:
        db.dispose()


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (no Rich markup or wrapping)."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
