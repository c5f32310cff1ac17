"""max_requests_per_second holds for a whole database: across the threads and sends of one process
(the daemon sends several segments at once) and across processes (several `send`s and daemons),
counted where it matters, at the (stub) SendGrid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from bisect import bisect_left
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from delivery_support import make_project, project_settings, seed_members
from scheduling_support import add_members, install_edition, wait_until
from sqlalchemy import insert
from stub_sendgrid import StubSendGrid

from newsletter.config import load_settings
from newsletter.db import Database
from newsletter.delivery.send import run_report, send_edition
from newsletter.delivery.transports.sendgrid import SendGridTransport
from newsletter.models import Subscriber, utcnow
from newsletter.schedule import list_schedule, schedule_edition


def most_in_one_second(arrivals: list[float]) -> int:
    """The largest number of requests that arrived within any window of one second."""
    times = sorted(arrivals)
    return max((bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def test_most_in_one_second() -> None:
    assert most_in_one_second([0.0, 0.5, 0.99, 1.0, 1.2]) == 4  # [0.5, 1.5)
    assert most_in_one_second([]) == 0


def test_threads_of_one_process_share_one_rate(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path, segments=("wales", "london"))
    seed_members(db, {"wales": 12, "london": 12})
    settings = project_settings(tmp_path, db_url, batch_size=1, concurrency=4, max_requests_per_second=5)
    with StubSendGrid() as stub:
        transport = SendGridTransport("SG.test-key", stub.url, timeout=5)
        # as the daemon does: one thread per segment, each its own send
        threads = [threading.Thread(target=send_edition, args=(db, settings, build),
                                    kwargs={"segments": [s], "transport": transport}) for s in ("wales", "london")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(stub.recorded) == 24
    assert most_in_one_second(stub.arrivals) <= 5


def _env(stub_url: str, db_url: str, project: Path) -> dict[str, str]:
    return {**os.environ, "NEWSLETTER_PROJECT_DIR": str(project), "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": "SG.test-key", "SENDGRID_HOST": stub_url,
            "NEWSLETTER_BATCH_SIZE": "1", "NEWSLETTER_CONCURRENCY": "4", "NEWSLETTER_MAX_REQUESTS_PER_SECOND": "8"}


@pytest.mark.slow
def test_three_senders_and_two_daemons_never_exceed_the_cap(project: Path, db_url: str, db: Database) -> None:
    manifest = install_edition(project)
    add_members(db)
    with db.session() as session:  # enough requests (one member each) to run for several seconds
        session.execute(insert(Subscriber), [
            {"email": f"m{i}@example.org", "email_key": f"m{i}@example.org", "region": region, "status": "active"}
            for i, region in enumerate(["east", "london", "scotland"] * 40)])
    settings = load_settings(project, database_url=db_url, batch_size=1)
    schedule_edition(db, settings, manifest, at=utcnow() + timedelta(seconds=3))
    with StubSendGrid() as stub:
        env = _env(stub.url, db_url, project)
        logs = [(project / f"p{i}.log").open("wb") for i in range(5)]
        daemons = [subprocess.Popen([sys.executable, "-m", "newsletter", "scheduler", "run", "--poll", "0.5"],
                                    cwd=project, env=env, stdout=logs[i], stderr=subprocess.STDOUT) for i in range(2)]
        senders = [subprocess.Popen([sys.executable, "-m", "newsletter", "send", str(manifest), "--yes", "--json"],
                                    cwd=project, env=env, stdout=logs[2 + i], stderr=subprocess.STDOUT)
                   for i in range(3)]
        try:
            for p in senders:
                p.wait(timeout=120)
            wait_until(lambda: {i.state for i in list_schedule(db, settings, estimate=False)} <= {"sent", "failed"},
                       timeout=60, what="the daemons are done")
        finally:
            for p in daemons:
                p.send_signal(signal.SIGTERM)
            for p in daemons:
                p.wait(timeout=60)
            for f in logs:
                f.close()
    counts = Counter(stub.recorded)
    assert set(counts.values()) == {1} and len(counts) == 130  # everyone once, whoever sent it
    assert sum(r.accepted for r in run_report(db, "2099-01")) == 130
    assert stub.requests == 130
    gaps = [round(b - a, 3) for a, b in zip(sorted(stub.arrivals), sorted(stub.arrivals)[1:], strict=False)]
    assert most_in_one_second(stub.arrivals) <= 8, f"more than 8 requests in one second at SendGrid: {gaps}"
    assert [p.returncode for p in senders] != [None] * 3
