"""The `newsletter` command. Thin: parse options, call library functions, print results.

Each area's commands live in newsletter/cli/<area>.py; this module wires them together and
turns NewsletterError into one clear line and an exit code (2 bad input, 1 other failures).
"""

from __future__ import annotations

import errno
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from typer.exceptions import TyperException

from newsletter import __version__
from newsletter.cli import (
    articles,
    database,
    digests,
    doctor,
    editions,
    schedule,
    secret,
    sends,
    serve,
    subscribers,
    users,
)
from newsletter.errors import DatabaseError, NewsletterError

app = typer.Typer(
    name="newsletter",
    help="Compose, schedule and deliver the members' email digest.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"newsletter {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    _state["debug"] = debug


articles.register(app)
editions.register(app)
subscribers.register(app)
sends.register(app)
schedule.register(app)
digests.register(app)
database.register(app)
secret.register(app)
serve.register(app)
doctor.register(app)
users.register(app)


def environment_failure(exc: BaseException) -> NewsletterError | None:
    """A clear error for a failure of the machine rather than of the tool: a full disk, a
    read-only or forbidden path, a database that went away in the middle of a command."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return NewsletterError(f"the disk is full{where}", hint="free some space and run the command again")
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        where = f" {exc.filename}" if exc.filename else ""
        return NewsletterError(f"cannot write{where}: {exc.strerror}", hint="check the path and its permissions")
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return DatabaseError(
            f"the database failed during the command: {str(exc.orig).strip().splitlines()[0]}",
            hint="check that the database server is running and reachable; then run the command again "
            "(work already recorded is kept)",
        )
    return None


def _print_error(exc: NewsletterError) -> int:
    err_console.print(Text.assemble(("error: ", "bold red"), exc.message))
    if exc.hint:
        err_console.print(f"hint: {exc.hint}", markup=False)
    return exc.exit_code


def run(args: list[str]) -> int:
    """Run the command line `args`; returns the exit status."""
    debug = "--debug" in args
    try:
        result = app(args=args, standalone_mode=False)
        # With standalone_mode=False, `raise typer.Exit(n)` in a command comes back as a return value.
        if isinstance(result, int):
            return result
    except NewsletterError as exc:
        if debug:
            raise
        return _print_error(exc)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted", markup=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return 130
    except TyperException as exc:  # usage errors: unknown command, bad option value, ...
        err_console.print(Text.assemble(("error: ", "bold red"), exc.format_message()))
        return exc.exit_code
    except Exception as exc:
        if debug:
            raise
        known = environment_failure(exc)
        if known is not None:
            return _print_error(known)
        err_console.print(
            Text.assemble(("internal error: ", "bold red"), f"{exc.__class__.__name__}: {exc}")
        )
        err_console.print("run again with --debug for the traceback", markup=False)
        return 1
    return 0


