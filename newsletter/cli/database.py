"""`newsletter db …`: schema management."""

from __future__ import annotations

import typer

from newsletter.cli.common import console, settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to this version's head revision."""
    from newsletter.db import safe_url, upgrade_database

    cfg = settings()
    before, head = upgrade_database(cfg.resolved_database_url)
    where = safe_url(cfg.resolved_database_url)
    if before == head:
        console.print(f"{where}: already at revision {head}", markup=False)
    else:
        console.print(f"{where}: upgraded {before or 'empty'} -> {head}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
