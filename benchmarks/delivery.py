"""Delivery benchmark: freeze and send an edition to N generated members (default 1,000,000) over
the 12 regional segments, through the real SendGridTransport, to a loopback HTTP sink (a separate
process answering 202). Compares with a naive path (render each recipient's email, one request
per recipient) measured on a sample and scaled. Prints JSON.

    .venv/bin/python benchmarks/delivery.py [--members 1000000] [--postgres-url URL] [--senders 2]

Goals (issue 14): 1,000,000 members in at most GOAL_SECONDS on SQLite and on PostgreSQL, peak RSS
at most GOAL_PEAK_RSS_MB, every member exactly once at the sink; two sender processes on one
PostgreSQL (--senders 2) at least GOAL_TWO_SENDERS_SPEEDUP times one.

--senders N compares in one run: the first six segments are sent by this process alone, the other
six (as many members) by it and N - 1 more sender processes sharing them, and the JSON gives both
throughputs and their ratio. With --freeze-first every segment is frozen before either is timed.
The machine's load and a pure-Python loop's time are printed beside the figures: on a shared
machine they move from one run to the next.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.synchronize import Barrier
from pathlib import Path

from sqlalchemy import text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.config import Settings, load_settings  # noqa: E402
from newsletter.db import Database, open_database  # noqa: E402
from newsletter.delivery.audience import freeze_audience  # noqa: E402
from newsletter.delivery.requests import MessageOptions, RecipientRow, helper_mail, substitutions  # noqa: E402
from newsletter.delivery.send import (  # noqa: E402
    _assignments,
    _segment_rules,
    load_variants,
    run_report,
    send_edition,
)
from newsletter.delivery.transports.base import MailRequest  # noqa: E402
from newsletter.delivery.transports.sendgrid import SendGridTransport  # noqa: E402
from newsletter.regions import REGIONS  # noqa: E402

GOAL_SECONDS = 10.0
GOAL_PEAK_RSS_MB = 300.0
GOAL_TWO_SENDERS_SPEEDUP = 1.6
SECRET = "benchmark-secret-not-for-real-use-0123456789"  # member links are signed (at least 32 characters)


def _send_process(db_url: str, root: str, build: str, url: str, concurrency: int, segments: list[str],
                  start: Barrier) -> None:
    """One more sender process on the same segments (--senders N), started like a sender that was
    already running: its imports and connection are made before the timed start."""
    db = open_database(db_url)
    settings = load_settings(Path(root), database_url=db_url, concurrency=concurrency, secret=SECRET,
                             max_requests_per_second=100_000.0, request_timeout=60.0)
    start.wait()
    send_edition(db, settings, Path(build), segments=segments,
                 transport=SendGridTransport("SG.benchmark", url, timeout=60))
    db.dispose()


def _python_loop_seconds() -> float:
    """A fixed pure-Python loop: how fast this machine is running Python right now."""
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.perf_counter() - start, 2)


def _timed_send(db: Database, settings: Settings, db_url: str, root: Path, build: Path, url: str,
                concurrency: int, senders: int, segments: list[str] | None) -> tuple[float, float, datetime]:
    """Send `segments` (None: all) with `senders` processes, this one included: (seconds, this
    process's CPU seconds, start)."""
    start = multiprocessing.Barrier(senders)
    others = [multiprocessing.Process(target=_send_process, args=(db_url, str(root), str(build), url, concurrency,
                                                                  segments, start))
              for _ in range(senders - 1)]
    for other in others:  # every sender freezes (the first to reach a segment does) and sends
        other.start()
    start.wait(timeout=120)
    t, c, started = time.perf_counter(), _cpu(), datetime.now(UTC)
    # freezes each segment, sends it while the next freeze
    send_edition(db, settings, build, segments=segments,
                 transport=SendGridTransport("SG.benchmark", url, timeout=60))
    for other in others:
        other.join()
    return time.perf_counter() - t, _cpu() - c, started


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sink(port_queue: multiprocessing.Queue, counts: multiprocessing.Array) -> None:  # type: ignore[type-arg]
    # The sink stands in for SendGrid, which does not share the sender's two cores: it does as
    # little as it can (its garbage-collector passes were a good part of its time).
    gc.set_threshold(100_000, 50, 100)
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with counts.get_lock():
                counts[0] += 1
                counts[1] += body.count(b'"to":[')
            self.send_response(202)
            self.send_header("X-Message-Id", "sink")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _settle(db: Database) -> None:
    """Leave the members table as a list that has been in the database a while finds it: on
    PostgreSQL, autovacuum has visited it (statistics, visibility map, hint bits). Without this,
    autovacuum's pass over the fresh million rows lands in the middle of the timed send, and the
    first scans write every page again. Not timed."""
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) subscribers")


def _generate(db: Database, members: int) -> None:
    """N members, set-based: regions round-robin, 1 in 50 unsubscribed, 1 in 97 bounced."""
    slugs = [r.slug for r in REGIONS]
    region = "CASE x % 12 " + " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(slugs)) + " END"
    status = "CASE WHEN x % 50 = 0 THEN 'unsubscribed' WHEN x % 97 = 0 THEN 'bounced' ELSE 'active' END"
    cols = "email, email_key, first_name, last_name, region, status, attributes, joined_at, created_at, updated_at"
    values = (f"'member' || x || '@example.org', 'member' || x || '@example.org', "
              f"CASE WHEN x % 9 = 0 THEN NULL ELSE 'First' || x END, 'Last' || x, {region}, {status}, '{{{{}}}}', "
              "{ts}, {ts}, {ts}")
    with db.session() as session:
        if db.dialect == "postgresql":
            ts = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
            session.execute(text(f"INSERT INTO subscribers ({cols}) SELECT {values.format(ts=ts)} "
                                 f"FROM generate_series(1, {members}) AS x"))
        else:
            ts = "'2026-01-01 00:00:00.000000'"
            session.execute(text(f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {members}) "
                                 f"INSERT INTO subscribers ({cols}) SELECT {values.format(ts=ts)} FROM c"))


def _project(root: Path) -> Path:
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for folder in ("issues", "templates", "subscribers"):
        shutil.copytree(REPO / folder, root / folder)
    from newsletter.render.build import build_edition

    out = root / "build" / "2026-12"
    build_edition(root / "issues" / "2026-12.yaml", load_settings(root), out)
    return out


def _naive(build: Path, root: Path, url: str, sample: int) -> float:
    """Per recipient: substitute into the HTML and text, build a Mail with the helper, one request."""
    _, variants = load_variants(build)
    variant = variants[0]
    options = MessageOptions("https://www.example.org/newsletter", SECRET.encode())
    transport = SendGridTransport("SG.benchmark", url, timeout=30)
    start = time.perf_counter()
    for i in range(sample):
        r = RecipientRow(i + 1, f"naive{i}@example.org", f"First{i} Last{i}", f"First{i}")
        html, plain = variant.html, variant.text
        for token, value in substitutions(options, r).items():
            html, plain = html.replace(token, value), plain.replace(token, value)
        personal = variant.__class__(**{**variant.__dict__, "html": html, "text": plain})
        body = json.dumps(helper_mail(personal, options, [r]).get()).encode()
        transport.send(MailRequest(variant.edition, variant.segment, i, body, 1))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", help="benchmark on this (empty) PostgreSQL database instead of SQLite")
    parser.add_argument("--naive-sample", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--senders", type=int, default=1, help="sender processes sharing the send")
    parser.add_argument("--freeze-first", action="store_true",
                        help="freeze every segment before the timed send (to time the senders alone)")
    args = parser.parse_args()

    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    counts = multiprocessing.Array("q", 2)
    sink = multiprocessing.Process(target=_sink, args=(queue, counts), daemon=True)
    sink.start()
    url = f"http://127.0.0.1:{queue.get(timeout=10)}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build = _project(root)
        db_url = args.postgres_url or f"sqlite:///{root / 'bench.db'}"
        db = open_database(db_url)
        t0 = time.perf_counter()
        _generate(db, args.members)
        generated = time.perf_counter() - t0
        _settle(db)
        settings = load_settings(root, database_url=db_url, concurrency=args.concurrency, secret=SECRET,
                                 max_requests_per_second=100_000.0, request_timeout=60.0)
        edition, variants = load_variants(build)
        names = [v.segment for v in variants]
        if args.freeze_first:
            freeze_audience(db, edition, variants, _assignments(_segment_rules(db, settings, names), names, names),
                            workers=2)
        machine = {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
                   "python_loop_seconds_before": _python_loop_seconds()}
        halves: dict[str, dict[str, float]] = {}
        if args.senders > 1:  # one sender on half the segments, then N on the other half
            half = len(names) // 2
            elapsed = elapsed_cpu = 0.0
            starts = []
            for label, senders, chosen in (("one_sender", 1, names[:half]), ("senders", args.senders, names[half:])):
                seconds, cpu, half_started = _timed_send(db, settings, db_url, root, build, url, args.concurrency,
                                                         senders, chosen)
                elapsed, elapsed_cpu = elapsed + seconds, elapsed_cpu + cpu
                starts.append(half_started)
                accepted = sum(r.accepted for r in run_report(db, edition) if r.segment in chosen)
                halves[label] = {"segments": len(chosen), "recipients": accepted, "seconds": round(seconds, 2),
                                 "recipients_per_second": round(accepted / seconds)}
            started = starts[0]
        else:
            elapsed, elapsed_cpu, started = _timed_send(db, settings, db_url, root, build, url, args.concurrency,
                                                        1, None)
        machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        reports = run_report(db, edition)
        # the last segment was handed to the senders (frozen) this long after the start
        frozen = max(((r.started_at - started).total_seconds() for r in reports if r.started_at), default=0.0)
        sent = sum(r.accepted for r in reports)
        frozen_total = sum(r.audience for r in reports)
        sink_requests, sink_personalizations = counts[0], counts[1]
        naive = _naive(build, root, url, args.naive_sample)
        naive_scaled = naive * sent / args.naive_sample
        db.dispose()
    sink.terminate()
    result = {
        "backend": "postgresql" if args.postgres_url else "sqlite",
        "members": args.members,
        "recipients": sent,
        "excluded": sum(sum(r.excluded.values()) for r in reports),
        "requests": sum(r.batches for r in reports),
        "sink_requests": sink_requests,
        "sink_personalizations": sink_personalizations,
        "generate_seconds": round(generated, 2),
        "all_frozen_after_seconds": round(frozen, 2),  # sending overlaps the freezing of the later segments
        "seconds": round(elapsed, 2),
        # CPU time of this process (not the sink's, nor PostgreSQL's, nor other senders'): steadier
        # than wall time on a machine others share, for comparing two versions
        "cpu_seconds": round(elapsed_cpu, 2),
        "recipients_per_second": round(sent / elapsed),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "naive_sample": args.naive_sample,
        "naive_sample_seconds": round(naive, 2),
        "naive_scaled_seconds": round(naive_scaled, 1),
        "speedup_vs_naive": round(naive_scaled / elapsed, 1),
        "senders": args.senders,
        "freeze_first": args.freeze_first,
        "every_member_once": sink_personalizations == sent == frozen_total,
        "machine": machine,
        "goal_peak_rss_mb": GOAL_PEAK_RSS_MB,
    }
    if args.senders > 1:
        speedup = halves["senders"]["recipients_per_second"] / halves["one_sender"]["recipients_per_second"]
        result.update({**halves, "speedup_vs_one_sender": round(speedup, 2),
                       "goal_two_senders_speedup": GOAL_TWO_SENDERS_SPEEDUP,
                       "meets_goal": speedup >= GOAL_TWO_SENDERS_SPEEDUP and result["every_member_once"]})
    else:
        result.update({"goal_seconds": GOAL_SECONDS, "meets_goal": (
            (args.members < 1_000_000 or elapsed <= GOAL_SECONDS)
            and result["peak_rss_mb"] <= GOAL_PEAK_RSS_MB and result["every_member_once"])})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
