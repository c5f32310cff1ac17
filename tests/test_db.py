"""Schema management: created on first use, upgrades are idempotent, models match the migration,
and a database from a newer version of the code is refused."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Float, LargeBinary, MetaData, Table, Unicode, inspect, text

from newsletter.db import (
    MIGRATIONS_DIR,
    alembic_config,
    create_db_engine,
    current_revision,
    head_revision,
    open_database,
    safe_url,
)
from newsletter.errors import DatabaseError
from newsletter.models import Base, Meta, ScheduledSend


def test_first_use_creates_every_table(db) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(db.engine) == head_revision()


def test_a_fresh_database_has_only_the_models_tables(db) -> None:
    """In particular no APScheduler job table: the schedule's one truth is scheduled_sends."""
    assert set(inspect(db.engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrading_drops_the_job_table_of_earlier_versions_and_keeps_the_schedule(db_url: str) -> None:
    engine = create_db_engine(db_url)
    command.upgrade(alembic_config(engine), "0004")  # the last schema that had the job table beside it
    # The table APScheduler's SQLAlchemy job store kept beside the rows in earlier versions.
    Table("apscheduler_jobs", MetaData(), Column("id", Unicode(191), primary_key=True),
          Column("next_run_time", Float(25), index=True), Column("job_state", LargeBinary, nullable=False),
          ).create(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES ('2099-01:east', 1, :s)"),
                     {"s": b"pickled job"})
        conn.execute(text(
            "INSERT INTO scheduled_sends (edition, segment, state, send_at, zone, manifest_path, build_dir,"
            " fingerprint, variant_sha256, created_at, updated_at) VALUES ('2099-01', 'east', 'scheduled', :at,"
            " 'Europe/London', 'm', 'b', 'f', 'v', :at, :at)"), {"at": datetime(2099, 1, 5, 8)})
    engine.dispose()
    database = open_database(db_url)
    assert "apscheduler_jobs" not in inspect(database.engine).get_table_names()
    with database.session() as s:
        assert [(r.segment, r.state) for r in s.query(ScheduledSend)] == [("east", "scheduled")]
    database.dispose()


def test_upgrading_keeps_the_greeting_of_audiences_frozen_before(db_url: str) -> None:
    """A send frozen by an earlier version and resumed after the upgrade greets the same names."""
    engine = create_db_engine(db_url)
    command.upgrade(alembic_config(engine), "0011")  # recipients kept {"first_name": ...} as JSON
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO send_runs (edition, segment, variant_sha256, subject, status, audience_count,"
                          " excluded, created_at) VALUES ('2026-12', 'wales', 'v', 's', 'frozen', 2, '{}', :at)"),
                     {"at": datetime(2026, 12, 1)})
        run_id = conn.execute(text("SELECT id FROM send_runs")).scalar_one()
        conn.execute(text("INSERT INTO recipients (run_id, edition, subscriber_id, email, name, substitutions)"
                          " VALUES (:r, '2026-12', 1, 'a@example.org', 'Ann Jones', :a),"
                          " (:r, '2026-12', 2, '', NULL, '{}')"),
                     {"r": run_id, "a": '{"first_name": "Ann"}'})
    engine.dispose()
    database = open_database(db_url)
    with database.session() as s:
        assert s.execute(text("SELECT subscriber_id, first_name FROM recipients ORDER BY 1")).all() == [
            (1, "Ann"), (2, "")]
    database.dispose()


def test_models_and_migrations_agree(db) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], "models changed without a migration: run python -m newsletter.migrations.regenerate \"what changed\""


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


def test_bulk_rows_relaxes_the_collector_only_while_the_last_user_runs() -> None:
    """A send or an import raises the collector's threshold while it streams rows; the usual one is
    back once the last of them (another thread's, or a nested one) ends, also after an error."""
    import gc
    import threading

    from newsletter.db import BULK_GC_THRESHOLD, bulk_rows

    usual = gc.get_threshold()
    inside, release = threading.Event(), threading.Event()

    def other_user() -> None:
        with bulk_rows():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other_user)
    thread.start()
    inside.wait(5)
    with pytest.raises(RuntimeError), bulk_rows():
        assert gc.get_threshold()[0] >= BULK_GC_THRESHOLD
        raise RuntimeError
    assert gc.get_threshold()[0] >= BULK_GC_THRESHOLD  # the other thread still streams
    release.set()
    thread.join()
    assert gc.get_threshold() == usual
