"""The `newsletter` command: a Typer app, one module per command group (thin: parse, call, print)."""

from newsletter.cli.app import app, main

__all__ = ["app", "main"]
