"""Kill and fault soak: an edition to 20,000 members through the loopback fault stub
(tests/stub_sendgrid.py) answering with random faults of every kind, the sending process killed
with SIGKILL at 10 random moments, and `send` run again until every batch is settled.

After each run the uncertain batches are reconciled the way the webhook does it: the stub's record
of what it processed (each personalization's custom_args name its run and batch) is replayed as
`delivered` events through `mark_batch_delivered`; an uncertain batch the stub never processed is
re-queued with `requeue_batch` (a person would do that after checking the Activity feed).

Prints JSON: duplicates (members mailed twice) and missing (active members never mailed) should
both be 0. Loopback only, bounded: at most --max-runs runs of `send`.

    .venv/bin/python benchmarks/soak.py [--members 20000] [--kills 10] [--postgres-url URL] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from delivery_support import make_project, seed_members  # noqa: E402
from stub_sendgrid import StubSendGrid  # noqa: E402

from newsletter.db import open_database  # noqa: E402
from newsletter.delivery import RunReport, list_batches, mark_batch_delivered, requeue_batch, run_report  # noqa: E402
from newsletter.errors import NotFound  # noqa: E402

GOAL_DUPLICATES = 0
GOAL_MISSING = 0
# one action per request; "ok" most of the time, every fault mode of the stub now and then
MODES = {"ok": 70, "429": 4, "retry-after-date": 1, "500": 4, "503": 3, "502": 3, "504": 3, "accept-504": 3,
         "timeout": 3, "drop": 3, "dribble": 3}
SEGMENTS = ("scotland", "wales", "london")


def reports_of(db: object) -> list[RunReport]:
    try:
        return run_report(db, "2026-12")  # type: ignore[arg-type]
    except NotFound:
        return []  # killed before the audience was frozen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-runs", type=int, default=60)
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database (default: a SQLite file)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    faults: Counter[str] = Counter()
    lock = threading.Lock()

    def fault(body: dict[str, object]) -> str:
        with lock:
            mode = rng.choices(list(MODES), weights=list(MODES.values()))[0]
            faults[mode] += 1
        return mode

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, StubSendGrid(slow=1.5, dribble=0.3) as stub:
        root = Path(tmp)
        stub.script = [fault] * 1_000_000
        make_project(root, segments=SEGMENTS)
        db_url = args.postgres_url or f"sqlite:///{root / 'soak.db'}"
        db = open_database(db_url)
        per_segment = args.members // len(SEGMENTS)
        active = seed_members(db, {s: per_segment + (1 if i < args.members % len(SEGMENTS) else 0)
                                   for i, s in enumerate(SEGMENTS)})
        env = {**os.environ, "NEWSLETTER_PROJECT_DIR": str(root), "NEWSLETTER_DATABASE_URL": db_url,
               "NEWSLETTER_SECRET": "soak-secret-" + "x" * 40, "NEWSLETTER_TRANSPORT": "sendgrid",
               "SENDGRID_API_KEY": "SG.soak", "SENDGRID_HOST": stub.url,
               "NEWSLETTER_BATCH_SIZE": str(args.batch_size), "NEWSLETTER_CONCURRENCY": "4",
               "NEWSLETTER_MAX_REQUESTS_PER_SECOND": "500", "NEWSLETTER_REQUEST_TIMEOUT": "1",
               "NEWSLETTER_MAX_RETRIES": "3", "NEWSLETTER_RETRY_BACKOFF_SECONDS": "0.05",
               "NEWSLETTER_RETRY_BACKOFF_MAX_SECONDS": "0.5"}
        runs, kills, exits = 0, 0, Counter[str]()
        reconciled, requeued, uncertain_seen = 0, 0, 0
        done = False
        while runs < args.max_runs and not done:
            runs += 1
            proc = subprocess.Popen(
                [sys.executable, "-m", "newsletter", "send", "x.yaml", "--build", "build/2026-12", "--yes", "--json"],
                cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if kills < args.kills:
                try:
                    proc.wait(timeout=rng.uniform(0.3, 3.0))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    kills += 1
            proc.wait(timeout=600)
            exits[str(proc.returncode)] += 1
            # the webhook's part: SendGrid's events for the batches it processed
            processed = {(int(a["run"]), int(a["batch"])) for a in list(stub.custom_args) if "run" in a}
            for report in reports_of(db):
                for batch in list_batches(db, report.run_id, "uncertain"):
                    uncertain_seen += 1
                    if (report.run_id, batch.seq) in processed:
                        change = mark_batch_delivered(db, report.run_id, batch.seq, actor="soak:events",
                                                      reason="processed event replayed from the stub")
                        reconciled += int(change.changed)
                    else:
                        change = requeue_batch(db, report.run_id, batch.seq, actor="soak:person",
                                               reason="not in the stub's record of processed requests")
                        requeued += int(change.changed)
            reports = reports_of(db)
            done = all(r.all_accepted for r in reports) and proc.returncode in (0, 1) and len(reports) == 3
        recorded = Counter(stub.recorded)
        reports = reports_of(db)
        db.dispose()
    duplicates = sum(n - 1 for n in recorded.values() if n > 1)
    missing = len(set(active) - set(recorded))
    result = {
        "backend": "postgresql" if args.postgres_url else "sqlite",
        "members": len(active),
        "batches": sum(r.batches for r in reports),
        "runs": runs,
        "kills": kills,
        "exit_codes": dict(exits),
        "requests": stub.requests,
        "faults": {k: v for k, v in sorted(faults.items()) if k != "ok"},
        "uncertain_batches_seen": uncertain_seen,
        "uncertain_then_reconciled": reconciled,
        "uncertain_then_requeued": requeued,
        "all_batches_accepted": all(r.all_accepted for r in reports),
        "duplicates": duplicates,
        "missing": missing,
        "goal_duplicates": GOAL_DUPLICATES,
        "goal_missing": GOAL_MISSING,
        "ok": duplicates == GOAL_DUPLICATES and missing == GOAL_MISSING,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
