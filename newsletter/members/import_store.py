"""The SQL side of an import chunk: find who is stored or erased, insert the new members with one
audit row each, apply updates. Values go to the driver as prepared tuples (no per-value
SQLAlchemy type processing, which cost more than the writes themselves).

SQLite: the chunk's transaction holds the write lock (BEGIN IMMEDIATE), so nothing can slip in
between lookup and insert; rows go in with the driver's `executemany` (a C loop).

PostgreSQL: new members are COPYed into a temporary table, then one statement inserts them and
writes their audit rows from its RETURNING. An address another import added after our lookup
makes the insert fail on the unique key (no ON CONFLICT clause: its per-row speculative insertion
cost a third of the statement); the chunk is then rolled back and retried, when that address is
found as stored. Lookups take the chunk's keys as one text
parameter and are planned with the actual values (never a generic plan cached while the table
was small), so they stay index scans while a big import grows the table, without re-analysing
it. `analyze` runs once when the import is done.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Connection

from newsletter.models import SubscriberStatus

ACTIVE = SubscriberStatus.ACTIVE.value
# JSON as text: almost always "{}", which needs no parsing
_STORED_COLUMNS = ("id, email_key, first_name, last_name, organisation, region, member_type, "
                   "CAST(attributes AS TEXT), joined_at, CAST(field_sources AS TEXT)")
_NEW_COLUMNS = ("email", "email_key", "first_name", "last_name", "organisation", "region", "member_type",
                "attributes", "consent_version", "joined_at")
_PG_TEMP = "import_new_members"
_PG_SETUP = (
    "SET LOCAL plan_cache_mode = force_custom_plan; "
    "SET LOCAL client_min_messages = warning; "
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_TEMP} (email text, email_key text, first_name text, "
    "last_name text, organisation text, region text, member_type text, attributes json, "
    "consent_version text, joined_at timestamptz) ON COMMIT DELETE ROWS"
)
_PG_INSERT = (
    f"WITH new AS (INSERT INTO subscribers ({', '.join(_NEW_COLUMNS)}, field_sources, status, "
    "consent_source, consent_at, created_at, updated_at) "
    f"SELECT {', '.join(c for c in _NEW_COLUMNS if c != 'joined_at')}, coalesce(joined_at, %(now)s), "
    f"'{{}}', '{ACTIVE}', %(actor)s, %(now)s, %(now)s, %(now)s FROM {_PG_TEMP} "
    "RETURNING id) "
    "INSERT INTO audit_log (at, subscriber_id, actor, action, new_status, reason) "
    f"SELECT %(now)s, id, %(actor)s, 'create', '{ACTIVE}', 'imported' FROM new"
)
_SQLITE_INSERT = (
    f"INSERT INTO subscribers ({', '.join(_NEW_COLUMNS)}, field_sources, status, consent_source, consent_at, "
    f"created_at, updated_at) VALUES ({', '.join('?' * len(_NEW_COLUMNS))}, '{{}}', '{ACTIVE}', ?, ?, ?, ?)"
)


class Stored(NamedTuple):
    """The columns an import compares, of one stored member (values as the ORM would give them)."""

    id: int
    email_key: str
    first_name: str | None
    last_name: str | None
    organisation: str | None
    region: str | None
    member_type: str | None
    attributes: dict[str, Any]
    joined_at: datetime | None
    field_sources: dict[str, str]


class NewMember(NamedTuple):
    email: str
    email_key: str
    first_name: str | None
    last_name: str | None
    organisation: str | None
    region: str | None
    member_type: str | None
    attributes: dict[str, str]
    consent_version: str | None
    joined_at: datetime | None  # None: the import's time


class Update(NamedTuple):
    id: int
    values: dict[str, Any]  # column -> new value (attributes / field_sources as dicts)
    reason: str  # the audit row's reason


def sqlite_stamp(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (naive UTC text with microseconds), so the
    column sorts and compares the same whichever path wrote it."""
    v = value.astimezone(UTC)
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
            f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}")


def _json(value: Any) -> str:
    return json.dumps(value) if value else "{}"


def _loaded(value: Any) -> Any:
    if isinstance(value, str):
        return {} if value == "{}" else json.loads(value)
    return value or {}


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


@lru_cache(maxsize=16)
def _marks(count: int) -> str:
    return ", ".join("?" * count)


class ChunkStore:
    """One chunk's statements, on the chunk's connection and transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        if self.postgres:
            conn.exec_driver_sql(_PG_SETUP)

    def _rows(self, sql: str, values: Sequence[str]) -> list[Any]:
        """Rows of `sql`, whose one `{}` stands for "is one of `values`" (one query for them all)."""
        if self.postgres:
            # one text parameter (keys and hashes hold no line breaks): no array to build in Python
            return self.conn.exec_driver_sql(sql.format("= ANY(string_to_array(%s, E'\\n'))"),
                                             ("\n".join(values),)).fetchall()
        return self.conn.exec_driver_sql(sql.format(f"IN ({_marks(len(values))})"), tuple(values)).fetchall()

    def erased(self, hashes: Sequence[str]) -> set[str]:
        """Which of these tombstone hashes are stored."""
        if not hashes:
            return set()
        return {row[0] for row in self._rows("SELECT email_hash FROM erasure_tombstones WHERE email_hash {}",
                                             hashes)}

    def stored(self, keys: Sequence[str]) -> dict[str, Stored]:
        """The stored members with these address keys, by key."""
        if not keys:
            return {}
        found: dict[str, Stored] = {}
        for row in self._rows(f"SELECT {_STORED_COLUMNS} FROM subscribers WHERE email_key {{}}", keys):
            found[row[1]] = Stored(row[0], row[1], row[2], row[3], row[4], row[5], row[6], _loaded(row[7]),
                                   _when(row[8]), _loaded(row[9]))
        return found

    def insert(self, members: Sequence[NewMember], actor: str, now: datetime) -> None:
        """Insert new members (active, the import as their consent source) with one `create` audit
        row each. IntegrityError when one of the addresses is stored by now (another writer)."""
        if not members:
            return
        if self.postgres:
            cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY {_PG_TEMP} FROM STDIN") as copy:
                for m in members:
                    copy.write_row((*m[:7], _json(m.attributes), m.consent_version, m.joined_at))
            self.conn.exec_driver_sql(_PG_INSERT, {"now": now, "actor": actor})
            return
        stamp = sqlite_stamp(now)
        self.conn.exec_driver_sql(_SQLITE_INSERT, [
            (*m[:7], _json(m.attributes), m.consent_version,
             stamp if m.joined_at is None else sqlite_stamp(m.joined_at), actor, stamp, stamp, stamp)
            for m in members])
        keys = [m.email_key for m in members]
        self.conn.exec_driver_sql(
            "INSERT INTO audit_log (at, subscriber_id, actor, action, new_status, reason) "
            f"SELECT ?, id, ?, 'create', '{ACTIVE}', 'imported' FROM subscribers "
            f"WHERE email_key IN ({_marks(len(keys))})", (stamp, actor, *keys))

    def update(self, updates: Sequence[Update], actor: str, now: datetime) -> None:
        """Apply the changes (one executemany per set of columns) and write one `update` audit row
        per member in one statement."""
        if not updates:
            return
        mark = "%s" if self.postgres else "?"
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for u in updates:
            columns = tuple(sorted(u.values))
            groups.setdefault(columns, []).append((*(self._value(c, u.values[c]) for c in columns), u.id))
        when = now if self.postgres else sqlite_stamp(now)
        for columns, rows in groups.items():
            assignments = ", ".join(f"{c} = {mark}" for c in columns)
            self.conn.exec_driver_sql(
                f"UPDATE subscribers SET {assignments}, updated_at = {mark} WHERE id = {mark}",
                [(*row[:-1], when, row[-1]) for row in rows])
        if self.postgres:
            self.conn.exec_driver_sql(
                "INSERT INTO audit_log (at, subscriber_id, actor, action, reason) "
                "SELECT %s, sid, %s, 'update', reason FROM unnest(%s::bigint[], %s::text[]) AS u(sid, reason)",
                (now, actor, [u.id for u in updates], [u.reason for u in updates]))
            return
        self.conn.exec_driver_sql(
            "INSERT INTO audit_log (at, subscriber_id, actor, action, reason) VALUES (?, ?, ?, 'update', ?)",
            [(when, u.id, actor, u.reason) for u in updates])

    def _value(self, column: str, value: Any) -> Any:
        if column in ("attributes", "field_sources"):
            return _json(value)
        if isinstance(value, datetime) and not self.postgres:
            return sqlite_stamp(value)
        return value


def analyze(conn: Connection) -> None:
    """Refresh the planner's statistics once a big import is done (PostgreSQL; SQLite plans
    these queries from its indexes alone)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE subscribers")

