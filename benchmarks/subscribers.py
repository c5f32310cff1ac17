"""Benchmark: importing subscribers and counting segments.

    .venv/bin/python benchmarks/subscribers.py [--rows 100000] [--members 1000000]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

1. Import a generated CSV of `--rows` members through the real importer (goal: 100,000 rows <= 2.5 s).
   Baseline: a naive row-by-row ORM import (one SELECT + INSERT + COMMIT per row) on a sample,
   scaled to the same number of rows.
2. Count every segment of subscribers/segments.yaml over `--members` subscribers, bulk-loaded with
   executemany (SQLite) or COPY (PostgreSQL), not through the importer (goal: <= 0.2 s per segment).
   Baseline: load the rows of a sample into Python and count there, scaled.

Prints one JSON document. Each backend uses a fresh database (a temp SQLite file; a temporary
PostgreSQL database created beside the given URL's database and dropped afterwards).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.db import Database, normalise_url, open_database  # noqa: E402
from newsletter.members.imports import import_file  # noqa: E402
from newsletter.members.segments import SegmentSet, count_members, load_segments  # noqa: E402
from newsletter.members.subscribers import normalise_email  # noqa: E402
from newsletter.models import Subscriber, SubscriberStatus  # noqa: E402
from newsletter.regions import REGIONS  # noqa: E402

TYPES = ("member", "member", "member", "associate", "corporate", "student")
STATUSES = (SubscriberStatus.ACTIVE,) * 17 + (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED,
                                             SubscriberStatus.COMPLAINED)
BASE_DAY = datetime(2010, 1, 1, tzinfo=UTC)


# issue 14: 100,000-row import and the slowest segment count over 1,000,000 members, both backends
GOAL_IMPORT_SECONDS = 2.5
GOAL_COUNT_SECONDS = 0.2

def write_csv(path: Path, rows: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Email", "First name", "Last name", "Organisation", "Region", "Member type"])
        for i in range(rows):
            region = rnd.choice(REGIONS)
            out.writerow([f"member{i}@example.org", f"First{i}", f"Last{i}", f"Council {i % 400}",
                          rnd.choice((region.name, region.slug, *region.aliases)), rnd.choice(TYPES)])


def naive_import(db: Database, path: Path, limit: int) -> int:
    """Row by row through the ORM: what a first attempt looks like."""
    from newsletter.members.subscribers import SubscriberDetails

    done = 0
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if done >= limit:
                break
            address = normalise_email(row["Email"])
            details = SubscriberDetails(row["First name"], row["Last name"], row["Organisation"],
                                        row["Region"], row["Member type"]).checked()
            with db.session() as session:
                found = session.scalar(select(Subscriber).where(Subscriber.email_key == address.key))
                if found is None:
                    session.add(Subscriber(email=address.email, email_key=address.key,
                                           first_name=details.first_name, last_name=details.last_name,
                                           organisation=details.organisation, region=details.region,
                                           member_type=details.member_type, attributes={}))
            done += 1
    return done


def generated_members(count: int, seed: int = 2) -> Iterator[dict[str, Any]]:
    rnd = random.Random(seed)
    slugs = [r.slug for r in REGIONS] + [None]
    for i in range(count):
        email = f"m{i}@example.org"
        yield {"email": email, "email_key": email, "first_name": f"F{i}", "last_name": f"L{i}",
               "organisation": f"Council {i % 400}", "region": rnd.choice(slugs),
               "member_type": rnd.choice(TYPES), "attributes": {}, "status": rnd.choice(STATUSES),
               "joined_at": BASE_DAY + timedelta(days=rnd.randrange(5000))}


def bulk_load(db: Database, count: int) -> None:
    now = datetime.now(UTC)
    if db.dialect == "postgresql":
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            columns = ("email, email_key, first_name, last_name, organisation, region, member_type, "
                       "attributes, status, joined_at, created_at, updated_at")
            with cur.copy(f"COPY subscribers ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for m in generated_members(count):
                    copy.write_row((m["email"], m["email_key"], m["first_name"], m["last_name"],
                                    m["organisation"], m["region"], m["member_type"], "{}", m["status"],
                                    m["joined_at"], now, now))
            raw.commit()
            cur.execute("ANALYZE subscribers")
            raw.commit()
        finally:
            raw.close()
        return
    # SQLite: plain sqlite3 executemany (the driver's C loop), values pre-formatted as SQLAlchemy
    # stores them (naive UTC datetimes as text).
    def stamp(value: datetime) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        created = stamp(now)
        cur.executemany(
            "INSERT INTO subscribers (email, email_key, first_name, last_name, organisation, region, "
            "member_type, attributes, status, joined_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?)",
            ((m["email"], m["email_key"], m["first_name"], m["last_name"], m["organisation"],
              m["region"], m["member_type"], m["status"].value, stamp(m["joined_at"]), created, created)
             for m in generated_members(count)))
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
    finally:
        raw.close()


def naive_count(db: Database, segments: SegmentSet, name: str, sample: int, total: int) -> float:
    """Seconds to count one segment by loading a sample of rows into Python, scaled to `total`."""
    region_rules = {n: set(segments.get(n).rule.values) for n in segments.names
                    if segments.get(n).rule.op == "region"}
    start = time.perf_counter()
    with db.session() as session:
        rows = session.execute(select(Subscriber.region, Subscriber.member_type, Subscriber.status)
                               .order_by(Subscriber.id).limit(sample)).all()
    before = segments.names[: segments.names.index(name)] if name in segments.priority else []
    wanted = region_rules.get(name)
    _ = sum(1 for region, mtype, status in rows if status == "active"
            and (region in wanted if wanted is not None else mtype == "associate")
            and not any(region in region_rules.get(b, set()) for b in before))
    return (time.perf_counter() - start) * total / sample


@contextmanager
def backend(kind: str, pg_url: str | None) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    assert pg_url
    name = f"nl_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(normalise_url(pg_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_backend(kind: str, pg_url: str | None, rows: int, members: int, segments: SegmentSet,
                csv_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with backend(kind, pg_url) as url:
        db = open_database(url)
        try:
            start = time.perf_counter()
            imported = import_file(db, csv_path)
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            rerun = import_file(db, csv_path)
            rerun_seconds = time.perf_counter() - start
            sample = min(2000, rows)
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM audit_log"))
                conn.execute(text("DELETE FROM subscribers"))
            start = time.perf_counter()
            naive_import(db, csv_path, sample)
            naive = (time.perf_counter() - start) * rows / sample
            result["import"] = {
                "rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
                "counts": imported.counts(), "rerun_seconds": round(rerun_seconds, 2),
                "rerun_counts": rerun.counts(), "naive_seconds_scaled": round(naive, 1),
                "naive_sample_rows": sample, "speedup_vs_naive": round(naive / seconds, 1),
                "goal_seconds": GOAL_IMPORT_SECONDS, "meets_goal": seconds * 100_000 / rows <= GOAL_IMPORT_SECONDS,
            }
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM audit_log"))
                conn.execute(text("DELETE FROM subscribers"))
            start = time.perf_counter()
            bulk_load(db, members)
            load_seconds = time.perf_counter() - start
            counts: dict[str, Any] = {}
            for name in segments.names:
                with db.session() as session:
                    start = time.perf_counter()
                    n = count_members(session, segments, name)
                    took = time.perf_counter() - start
                naive = naive_count(db, segments, name, min(100_000, members), members)
                counts[name] = {"members": n, "seconds": round(took, 3),
                                "naive_seconds_scaled": round(naive, 2),
                                "speedup_vs_naive": round(naive / took, 1)}
            slowest = max(c["seconds"] for c in counts.values())
            result["segments"] = {"subscribers": members, "bulk_load_seconds": round(load_seconds, 1),
                                  "slowest_seconds": slowest, "goal_seconds": GOAL_COUNT_SECONDS,
                                  "meets_goal": slowest <= GOAL_COUNT_SECONDS, "per_segment": counts}
        finally:
            db.dispose()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--postgres-url")
    args = parser.parse_args(argv)
    segments = load_segments(REPO / "subscribers" / "segments.yaml")
    report: dict[str, Any] = {"benchmark": "subscribers", "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "members.csv"
        write_csv(csv_path, args.rows)
        for kind in ("sqlite", "postgresql") if args.postgres_url else ("sqlite",):
            load_before = os.getloadavg()[0]
            report[kind] = run_backend(kind, args.postgres_url, args.rows, args.members, segments, csv_path)
            # the machine may be shared: the 1-minute load average before and after each backend
            report[kind]["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
