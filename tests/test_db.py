"""Schema management: created on first use, upgrades are idempotent, models match the migration,
and a database from a newer version of the code is refused."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from newsletter.db import (
    MIGRATIONS_DIR,
    create_db_engine,
    current_revision,
    head_revision,
    open_database,
    safe_url,
)
from newsletter.errors import DatabaseError
from newsletter.models import Base, Meta


def test_first_use_creates_every_table(db) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(db.engine) == head_revision()


def test_models_and_migrations_agree(db) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": _ignore_apscheduler}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], "models changed without a migration: run python -m newsletter.migrations.regenerate \"what changed\""


def _ignore_apscheduler(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    return not (type_ == "table" and name == "apscheduler_jobs")


def test_migrations_form_one_line() -> None:
    """Two migrations written on parallel branches must be re-chained before merging."""
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert len(heads) == 1, f"several migration heads {heads}: set down_revision of the newer one"


def test_reopening_is_a_no_op_and_keeps_data(db_url: str) -> None:
    first = open_database(db_url)
    with first.session() as s:
        s.add(Meta(key="k", value="v"))
    first.dispose()
    second = open_database(db_url)
    with second.session() as s:
        assert s.get(Meta, "k").value == "v"
    second.dispose()


def test_database_newer_than_code_is_refused(db_url: str) -> None:
    database = open_database(db_url)
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zz99_future'"))
    database.dispose()
    with pytest.raises(DatabaseError, match="newer than this version"):
        open_database(db_url)


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError) as info:
        open_database("postgresql://nobody:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(info.value)
    assert "cannot" in str(info.value)


def test_safe_url_hides_password() -> None:
    assert "s3cret" not in safe_url("postgresql+psycopg://u:s3cret@h/db")


def test_sqlite_write_session_takes_the_write_lock_up_front(tmp_path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'w.db'}")
    other = create_db_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with database.write_session() as s:
        s.add(Meta(key="a", value="1"))
        s.flush()
        # A second writer can't start while we hold the lock (busy timeout shortened).
        with other.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=50")
            with pytest.raises(Exception, match="locked"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
    with database.session() as s:
        assert s.get(Meta, "a").value == "1"
    other.dispose()
    database.dispose()
