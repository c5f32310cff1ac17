"""`newsletter db …`: schema management."""

from __future__ import annotations

import typer

from newsletter.commands.common import console, settings
from newsletter.db import create_db_engine, current_revision, safe_url, upgrade

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to this version's head revision."""
    cfg = settings()
    engine = create_db_engine(cfg.resolved_database_url)
    try:
        before = current_revision(engine)
        head = upgrade(engine)
    finally:
        engine.dispose()
    where = safe_url(cfg.resolved_database_url)
    if before == head:
        console.print(f"{where}: already at revision {head}", markup=False)
    else:
        console.print(f"{where}: upgraded {before or 'empty'} -> {head}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
