"""CLI: `newsletter secret generate|move-stored`: the secret that signs member links."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import console, database

secret_app = typer.Typer(help="The secret that signs unsubscribe, preferences and confirmation links.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(secret_app, name="secret")


@secret_app.command("generate")
def secret_generate(path: Annotated[Path, typer.Argument(help="New file to write (mode 0600).")]) -> None:
    """Write a new random secret to PATH (mode 0600); then set NEWSLETTER_SECRET_FILE=PATH."""
    from newsletter.delivery import new_secret, write_secret_file

    write_secret_file(path, new_secret())
    console.print(f"wrote a new secret to {path} (mode 0600); set NEWSLETTER_SECRET_FILE={path}", markup=False)


@secret_app.command("move-stored")
def secret_move_stored(path: Annotated[Path, typer.Argument(help="New file to write (mode 0600).")]) -> None:
    """Move the secret an earlier version kept in the database to PATH (mode 0600) and delete it there."""
    from newsletter.delivery import move_stored_secret

    with database() as db:
        moved = move_stored_secret(db, path)
    if moved:
        console.print(f"moved the stored secret to {path} and deleted it from the database; "
                      f"set NEWSLETTER_SECRET_FILE={path}", markup=False)
    else:
        console.print("this database keeps no secret; nothing to move", markup=False)
