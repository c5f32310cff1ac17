"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL.

`open_database(url)` is the one entry point: it creates the engine, brings the schema up to date
(first use creates it) and refuses a database whose schema is newer than this code.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, FromClause, create_engine, event
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
BULK_GC_THRESHOLD = 100_000  # young objects between two collector passes while rows stream (default 700)

_bulk_lock = threading.Lock()
_bulk_users = 0
_bulk_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def bulk_rows() -> Iterator[None]:
    """Fewer garbage-collector passes while millions of rows go through Python (a send, an
    import). Each row makes a few lists, tuples and dicts that reference counting frees at once,
    yet every 700 of them started a pass over the young objects, and every so often over all of
    the process's objects: a third of a 1,000,000-member send and of a 100,000-row import went
    there. Nests, and is shared by threads: the usual threshold is back once the last one ends."""
    global _bulk_users, _bulk_saved
    with _bulk_lock:
        if _bulk_users == 0:
            _bulk_saved = gc.get_threshold()
            gc.set_threshold(max(BULK_GC_THRESHOLD, _bulk_saved[0]), *_bulk_saved[1:])
        _bulk_users += 1
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk_users -= 1
            if _bulk_users == 0:
                gc.set_threshold(*_bulk_saved)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


class _SQLiteHintsCompiler(SQLiteCompiler):
    """Renders `Select.with_hint(table, "INDEXED BY ix", "sqlite")` after the table's name, where
    SQLAlchemy's SQLite compiler drops table hints: SQLite's planner prefers a rowid lookup to
    any index, even a partial index that would find nothing in far fewer steps."""

    def get_from_hint_text(self, table: FromClause, text: str | None) -> str | None:
        return text


def create_db_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Members' addresses live in this file: only its owner may read it (SQLite gives the
            # -wal and -shm files the same mode).
            if not Path(path).exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        engine.dialect.statement_compiler = _SQLiteHintsCompiler

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            # Let the driver leave transactions to us, so "BEGIN IMMEDIATE" can take the write
            # lock up front (see `write_transaction`).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Deleted and overwritten content (erased members) is zeroed in the file, not left in
            # free pages.
            cur.execute("PRAGMA secure_delete=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.info.pop("sqlite_begin", "BEGIN")
            conn.exec_driver_sql(mode)

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to the code's head revision; refuse a database that is ahead of it."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot open database {safe_url(str(engine.url))}: {exc.orig}",
            hint="check NEWSLETTER_DATABASE_URL",
        ) from None
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise DatabaseError(
            f"database {safe_url(str(engine.url))} has schema revision {current}, "
            "which is newer than this version of newsletter",
            hint="upgrade the newsletter package, or point NEWSLETTER_DATABASE_URL elsewhere",
        )
    head = head_revision()
    if current != head:
        command.upgrade(alembic_config(engine), "head")
    return head


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    # SQLite: this process's writers queue here rather than at the file's lock, whose busy handler
    # sleeps and polls, so a long-waiting writer (a freeze) is not starved by a stream of short
    # ones (a send's claims). Other processes still meet at the file's lock (busy_timeout).
    _writers: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _pinned: threading.local = field(default_factory=threading.local, repr=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a SQLite write transaction begun by hand: one writer of this process at a time
        (what `write_session` and `write_connection` do). Nothing on PostgreSQL."""
        if self.engine.dialect.name != "sqlite":
            yield
            return
        with self._writers:
            yield

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """Like `session`, but takes SQLite's write lock at BEGIN (no upgrade deadlocks).
        On PostgreSQL it is the same as `session`; use row locks there."""
        if self.engine.dialect.name != "sqlite":
            with self.session() as session:
                yield session
            return
        with self._writers, self.engine.connect() as conn:
            conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Until the block ends, this thread's `write_connection` and `reading` use one
        connection instead of taking one from the pool (and, on PostgreSQL, pinging it) each
        time: a send's worker makes three or four of them a batch (0.53 -> 0.35 ms each). A
        connection the database dropped is replaced when next used (SQLAlchemy reconnects an
        invalidated Connection), so retrying after a restart works as with the pool. The
        connection is made on first use, inside the caller's retries."""
        if getattr(self._pinned, "active", False):
            yield
            return
        self._pinned.active, self._pinned.conn = True, None
        try:
            yield
        finally:
            conn, self._pinned.active, self._pinned.conn = self._pinned.conn, False, None
            if conn is not None:
                conn.close()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if getattr(self._pinned, "active", False):
            conn: Connection | None = self._pinned.conn
            if conn is None or conn.closed:
                conn = self._pinned.conn = self.engine.connect()
            yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection (no ORM) in one transaction, committed on success; takes SQLite's
        write lock at BEGIN like `write_session`. For the hot statements of a send."""
        with self.writing(), self._connection() as conn:
            if self.engine.dialect.name == "sqlite":
                conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
            with conn.begin():
                yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A Core connection for a hot read, in a transaction that ends in COMMIT. The pool ends
        a plain read with a ROLLBACK, at which psycopg forgets every statement it has prepared on
        the connection, so a statement run once a batch was parsed and planned every time
        (PostgreSQL, 1,000,000 members: 978 batch reads, 2,000 claims and outcomes re-parsed)."""
        with self._connection() as conn, conn.begin():
            yield conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()


def upgrade_database(url: str) -> tuple[str | None, str]:
    """Explicit `db upgrade`: (revision before, revision now)."""
    engine = create_db_engine(url)
    try:
        before = current_revision(engine)
        return before, upgrade(engine)
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot use database {safe_url(normalise_url(url))}: {getattr(exc, 'orig', exc)}",
            hint="check NEWSLETTER_DATABASE_URL and that the server is running",
        ) from None
    finally:
        engine.dispose()


def database_exists(url: str) -> bool:
    """False for an SQLite file not created yet (so a read-only command need not create it);
    a server database is taken to exist (opening it says otherwise)."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return True
    path = make_url(url).database
    return not path or path == ":memory:" or Path(path).is_file()


def open_database(url: str, *, migrate: bool = True) -> Database:
    try:
        engine = create_db_engine(url)
        if migrate:
            upgrade(engine)
    except DatabaseError:
        raise
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot use database {safe_url(normalise_url(url))}: {exc.__class__.__name__}: "
            f"{getattr(exc, 'orig', exc)}",
            hint="check NEWSLETTER_DATABASE_URL and that the server is running",
        ) from None
    return Database(engine, sessionmaker(engine, expire_on_commit=False))
