"""Shared fixtures.

Databases are real: every test that takes `db` / `db_url` runs once on a fresh SQLite file and once
on a fresh PostgreSQL database (created per test, dropped after) when NEWSLETTER_TEST_POSTGRES_URL
is set (CI sets it; locally those runs skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsletter.db import Database, normalise_url, open_database

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED = REPO.parent / "shared"
PG_ENV = "NEWSLETTER_TEST_POSTGRES_URL"

# Settings from the developer's environment must not leak into tests.
for _name in list(os.environ):
    if _name.startswith("NEWSLETTER_") and _name != PG_ENV or _name.startswith("SENDGRID_"):
        os.environ.pop(_name)
# Sending and the member web need a token secret (never generated outside the demo): tests share
# this one; the tests of a missing secret remove it.
TEST_SECRET = "test-token-secret-" + "x" * 40
os.environ["NEWSLETTER_SECRET"] = TEST_SECRET


def _admin_engine(base_url: str):  # type: ignore[no-untyped-def]
    return create_engine(normalise_url(base_url), isolation_level="AUTOCOMMIT")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set")
    name = f"nl_{uuid.uuid4().hex[:16]}"
    admin = _admin_engine(base)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalise_url(base)).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An open, migrated database on each backend."""
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's sample project (pyproject settings, issues, templates,
    subscribers) in a temp dir, made the working directory and project directory."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for folder in ("issues", "templates", "subscribers"):
        if (REPO / folder).exists():
            shutil.copytree(REPO / folder, root / folder)
    monkeypatch.chdir(root)
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(root))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{root / 'newsletter.db'}")
    return root


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the `newsletter` CLI in-process: cli("build", "issues/x.yaml") -> CliResult."""
    from newsletter.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One Chromium for the whole run, shared by every browser test (Playwright's sync API allows one
    per thread), from Debian's package: installed with apt when missing, as on CI."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("chromium is not installed and cannot be installed here")
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
