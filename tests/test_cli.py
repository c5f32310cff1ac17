"""The CLI's contract: one clear line per error, exit 2 for bad input, 1 for other failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from newsletter import __version__
from newsletter.errors import DatabaseError


def test_version(cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_bad_setting_exits_2_with_one_clear_line(cli, project, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "lots")
    result = cli("db", "upgrade")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid setting: concurrency")
    assert "Traceback" not in result.stderr


def test_database_failure_exits_1_without_password(cli, project, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql://u:pa55word@127.0.0.1:1/x")
    result = cli("db", "upgrade")
    assert result.exit_code == 1
    assert "error: cannot" in result.stderr and "pa55word" not in result.stderr
    assert "hint:" in result.stderr


def test_debug_shows_the_traceback(cli, project, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql://u:p@127.0.0.1:1/x")
    with pytest.raises(DatabaseError):
        cli("--debug", "db", "upgrade")


def test_usage_error_exits_2(cli) -> None:
    assert cli("no-such-command").exit_code == 2


def test_db_upgrade_is_idempotent(cli, project) -> None:
    first = cli("db", "upgrade")
    second = cli("db", "upgrade")
    assert first.exit_code == second.exit_code == 0
    assert "upgraded empty" in first.stdout and "already at revision" in second.stdout


def test_console_script_runs(project) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "Usage" in result.stdout


def test_exit_codes_raised_by_commands_are_kept(cli) -> None:
    import typer

    from newsletter.cli.app import app

    @app.command("exit-three", hidden=True)
    def _exit_three() -> None:
        raise typer.Exit(3)

    try:
        assert cli("exit-three").exit_code == 3
    finally:
        app.registered_commands.pop()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk")
@pytest.mark.parametrize("args", [
    ("subscribers", "export", "--out", "/dev/full"),
    ("preview", "issues/2026-12.yaml", "--out", "/dev/full"),
])
def test_a_full_disk_is_named_not_an_internal_error(cli, project, args) -> None:
    cli("subscribers", "import", "subscribers/sample.csv")
    result = cli(*args)
    assert result.exit_code == 1
    assert "error: the disk is full" in result.stderr and "internal error" not in result.stderr


def test_version_and_help_load_no_stage_and_open_no_database(tmp_path) -> None:
    """`--version` and `--help` must stay fast: no stage package, no database, no Alembic."""
    probe = (
        "import sys; from newsletter.cli import main; main(['--help']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'pydantic') "
        "or m.startswith(('newsletter.content', 'newsletter.render', 'newsletter.members', "
        "'newsletter.delivery', 'newsletter.schedule', 'newsletter.db'))), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False,
                            cwd=tmp_path)
    assert "Usage" in result.stdout
    assert result.stderr.strip() == "[]"
