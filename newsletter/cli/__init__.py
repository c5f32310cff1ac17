"""The `newsletter` command: a Typer app, one module per command group (thin: parse, call, print)."""

import sys

from newsletter import __version__


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. `--version` answers before anything else is loaded."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        print(f"newsletter {__version__}")
        return 0
    from newsletter.cli.app import run

    return run(args)


__all__ = ["main"]
