"""CLI: `newsletter users add|list|disable|reset`: the people who sign in to the console."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import console, database, print_json, settings

users_app = typer.Typer(help="Console users (comms and admins) and their sign-in links.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(users_app, name="users")


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _link(token: str) -> str:
    return f"{settings().public_base_url.rstrip('/')}/admin/set-password/{token}"


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Argument(help="The person's email address (their sign-in name).")],
    role: Annotated[str, typer.Option(help="comms (editions, previews, tests, schedules, reports) or admin (everything).")],
) -> None:
    """Add a console user; prints a one-time link (valid 72 hours) where they choose a password."""
    from newsletter.accounts import SETUP_LIFETIME, add_user

    cfg = settings()
    with database(cfg) as db:
        user, token = add_user(db, email, role, actor=_actor())
    hours = int(SETUP_LIFETIME.total_seconds() // 3600)
    console.print(f"added {user.email} ({user.role}); send them this one-time link to set a password "
                  f"(valid {hours} hours, works once):", markup=False)
    print(_link(token))


@users_app.command("reset")
def users_reset(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """A new one-time set-password link; the old password stops working and sessions end."""
    from newsletter.accounts import new_setup_link

    with database() as db:
        token = new_setup_link(db, email, actor=_actor())
    console.print(f"new set-password link for {email.strip().lower()} (the old password no longer works):", markup=False)
    print(_link(token))


@users_app.command("list")
def users_list(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every console user, with role and state (never a password or hash)."""
    from rich.table import Table

    from newsletter.accounts import list_users
    from newsletter.models import utcnow

    with database() as db:
        users = list_users(db)
    if json_out:
        print_json([u.as_dict() for u in users])
        return
    now = utcnow()
    table = Table("email", "role", "state", "last sign-in", title_justify="left")
    for u in users:
        state = ("disabled" if u.disabled else "locked" if u.locked_until and u.locked_until > now
                 else "active" if u.has_password else "waiting for a password")
        table.add_row(u.email, u.role, state, f"{u.last_login_at:%Y-%m-%d %H:%M} UTC" if u.last_login_at else "-")
    console.print(table)


@users_app.command("disable")
def users_disable(email: Annotated[str, typer.Argument(help="The user's email address.")]) -> None:
    """The user can no longer sign in; their sessions end at once."""
    from newsletter.accounts import disable_user

    with database() as db:
        user = disable_user(db, email, actor=_actor())
    console.print(f"disabled {user.email}; their sessions were ended", markup=False)
