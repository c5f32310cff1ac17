"""The README is part of the product: its set-up commands are what CI runs, and its CLI reference
names every command the tool has."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.main import get_command

from newsletter.cli.app import app

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text("utf-8")


def _commands(command, prefix=()):  # type: ignore[no-untyped-def]
    sub = getattr(command, "commands", None)
    if not sub:
        yield " ".join(prefix)
        return
    for name, child in sub.items():
        if not getattr(child, "hidden", False):
            yield from _commands(child, (*prefix, name))


def test_ci_runs_the_readme_test_command() -> None:
    block = re.search(r"## Set-up: two commands.*?```sh\n(.*?)```", README, re.S)
    assert block, "README has no set-up block"
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("newsletter demo")
    assert tests in (REPO / ".ci" / "run").read_text("utf-8")


def test_cli_reference_names_every_command() -> None:
    reference = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    root = get_command(app)
    assert isinstance(app, typer.Typer)
    rows = [line for line in reference.splitlines() if line.startswith("| `newsletter ")]
    missing = []
    for path in _commands(root):
        group, _, name = path.rpartition(" ")
        words = [re.findall(r"[a-z][a-z-]*", row) for row in rows]
        if not any(f"newsletter {group}".strip() in row and name in found
                   for row, found in zip(rows, words, strict=True)):
            missing.append(path)
    assert not missing, f"README CLI reference lacks: {missing}"
