"""Member web benchmark: RFC 8058 one-click unsubscribe latency under a steady load, and Event
Webhook ingestion throughput, each against a naive baseline in the same run. Prints JSON.

    .venv/bin/python benchmarks/web.py [--rate 200] [--seconds 30] [--postgres-url URL]

One-click: `newsletter.web:create_app` served by uvicorn (one worker, as `newsletter serve` starts
it) in another process on loopback; an open-loop client sends POST /u/<token> with body
`List-Unsubscribe=One-Click` at --rate requests/s for --seconds, each to a different member (so each
request really unsubscribes someone), over keep-alive connections, and times each answer. The
naive baseline is the same route in an app that opens the database per request (engine, schema
check, ORM load and save), a common first version; it gets the same load for a third of the time.

Webhook: signed POSTs of 10,000 events (delivered, open, processed, click, some bounces) to the same
server; events/s over all of them. The naive baseline stores each event in its own transaction
after looking its id up (check-then-insert), measured on 2,000 events.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import queue
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import insert, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.db import open_database  # noqa: E402
from newsletter.delivery import UNSUBSCRIBE, make_token  # noqa: E402
from newsletter.models import Batch, DeliveryEvent, SendRun, Subscriber, utcnow  # noqa: E402

SECRET = "benchmark-secret-" + "b" * 40
BODY = b"List-Unsubscribe=One-Click"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _naive_app(database_url: str):  # type: ignore[no-untyped-def]
    """The baseline: one-click done the simple way (open the database for each request)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from newsletter.delivery import verify_token
    from newsletter.members import audit

    def unsubscribe(token: str) -> int:
        member_id = verify_token(SECRET, token, UNSUBSCRIBE)
        if member_id is None:
            return 404
        db = open_database(database_url)
        try:
            with db.write_session() as session:
                sub = session.get(Subscriber, member_id)
                if sub is None:
                    return 404
                if sub.status == "active":
                    audit(session, sub.id, "one-click", "status", old=sub.status, new="unsubscribed", reason="naive")
                    sub.status = "unsubscribed"
        finally:
            db.dispose()
        return 200

    async def endpoint(request: Request) -> PlainTextResponse:
        from starlette.concurrency import run_in_threadpool

        if await request.body() != BODY:
            return PlainTextResponse("bad body", status_code=400)
        status = await run_in_threadpool(unsubscribe, request.path_params["token"])
        return PlainTextResponse("ok", status_code=status)

    return Starlette(routes=[Route("/u/{token}", endpoint, methods=["POST"])])


def _serve(kind: str, project: str, database_url: str, port: int, public_key: str) -> None:
    import uvicorn

    os.environ.update({"NEWSLETTER_PROJECT_DIR": project, "NEWSLETTER_DATABASE_URL": database_url,
                       "NEWSLETTER_SECRET": SECRET, "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
                       "NEWSLETTER_TRANSPORT": "memory"})
    if kind == "ours":
        uvicorn.run("newsletter.web:create_app", factory=True, host="127.0.0.1", port=port, log_level="warning",
                    access_log=False)
    else:
        uvicorn.run(_naive_app(database_url), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _start(kind: str, project: Path, database_url: str, public_key: str) -> tuple[multiprocessing.Process, int]:
    port = _port()
    proc = multiprocessing.Process(target=_serve, args=(kind, str(project), database_url, port, public_key), daemon=True)
    proc.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{kind} server did not start")


def _load(port: int, tokens: list[str], rate: float, seconds: float, workers: int = 16) -> dict[str, object]:
    """Open loop: request i is due at start + i/rate; latency is measured from when it was due,
    so a slow server cannot hide its queue (no coordinated omission)."""
    total = int(rate * seconds)
    jobs: queue.Queue[tuple[int, float] | None] = queue.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while (job := jobs.get()) is not None:
            i, due = job
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("POST", f"/u/{tokens[i]}", body=BODY,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                ok, response = False, None
                with lock:
                    errors.append(type(exc).__name__)
            elapsed = time.perf_counter() - due
            with lock:
                latencies.append(elapsed)
                if response is not None and not ok:
                    errors.append(f"HTTP {response.status}")
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.2
    for i in range(total):
        jobs.put((i, start + i / rate))
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"requests": total, "rate_per_second": rate, "seconds": seconds, "errors": len(errors),
            "error_kinds": sorted(set(errors)), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "mean_ms": round(1000 * statistics.fmean(ordered), 2)}


def _signer():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()

    def sign(body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        return {"X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                "Content-Type": "application/json"}

    return public, sign


def _events(first: int, count: int, members: int) -> list[dict[str, object]]:
    kinds = ("delivered", "processed", "open", "click", "delivered", "open", "deferred", "bounce")
    now = int(time.time())
    return [{"email": f"member{(first + i) % members + 1}@example.org", "timestamp": now, "event": kinds[i % len(kinds)],
             "sg_event_id": f"ev-{first + i:09d}", "sg_message_id": "bench.1", "edition": "2026-12",
             "segment": "wales", "run": "1", "batch": str(((first + i) % members) // 1000),
             "subscriber_id": str((first + i) % members + 1), "sg_machine_open": (i % 3 == 0)}
            for i in range(count)]


def _webhook(port: int, sign, posts: int, per_post: int, members: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    bodies = [json.dumps(_events(i * per_post, per_post, members)).encode() for i in range(posts)]
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/webhooks/sendgrid", body=body, headers=sign(body))
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise SystemExit(f"webhook answered {response.status}: {payload[:200]!r}")
    elapsed = time.perf_counter() - started
    return {"posts": posts, "events_per_post": per_post, "seconds": round(elapsed, 3),
            "events_per_second": round(posts * per_post / elapsed), "body_bytes": len(bodies[0])}


def _naive_events(database_url: str, count: int, members: int) -> dict[str, object]:
    db = open_database(database_url)
    events = _events(10**8, count, members)
    started = time.perf_counter()
    for e in events:
        with db.write_session() as session:
            if session.scalar(select(DeliveryEvent.sg_event_id).where(DeliveryEvent.sg_event_id == e["sg_event_id"])):
                continue
            session.execute(insert(DeliveryEvent).values(
                sg_event_id=e["sg_event_id"], event=e["event"], run_id=1, subscriber_id=int(str(e["subscriber_id"])),
                machine_open=bool(e["sg_machine_open"]), received_at=utcnow()))
    elapsed = time.perf_counter() - started
    db.dispose()
    return {"events": count, "seconds": round(elapsed, 3), "events_per_second": round(count / elapsed)}


def _seed(database_url: str, members: int) -> None:
    db = open_database(database_url)
    rows = [{"email": f"member{i}@example.org", "email_key": f"member{i}@example.org", "first_name": f"M{i}",
             "region": "wales", "status": "active", "attributes": {}, "field_sources": {}} for i in range(1, members + 1)]
    with db.write_session() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Subscriber), rows[start:start + 5000])
        # the send the events belong to: run 1, one accepted batch per 1,000 members
        session.execute(insert(SendRun), [{"id": 1, "edition": "2026-12", "segment": "wales", "variant_sha256": "0" * 64,
                                           "subject": "bench", "status": "finished", "excluded": {}}])
        session.execute(insert(Batch), [{"run_id": 1, "seq": seq, "status": "accepted", "recipient_count": 1000}
                                        for seq in range(members // 1000 + 1)])
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--postgres-url", help="benchmark on this (empty, disposable) PostgreSQL database")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nl-web-bench-"))
    (work / "pyproject.toml").write_text('[tool.newsletter]\npublic_base_url = "https://news.example.org"\n', "utf-8")
    total = int(args.rate * args.seconds)
    naive_seconds = max(5.0, args.seconds / 3)
    members = total + int(args.rate * naive_seconds) + 10
    database_url = args.postgres_url or f"sqlite:///{work / 'bench.db'}"
    public, sign = _signer()
    try:
        _seed(database_url, members)
        tokens = [make_token(SECRET, i, UNSUBSCRIBE) for i in range(1, members + 1)]
        proc, port = _start("ours", work, database_url, public)
        try:
            ours = _load(port, tokens[:total], args.rate, args.seconds)
            webhook = _webhook(port, sign, posts=5, per_post=10_000, members=members)
        finally:
            proc.terminate()
            proc.join(10)
        proc, port = _start("naive", work, database_url, public)
        try:
            naive = _load(port, tokens[total:], args.rate, naive_seconds)
        finally:
            proc.terminate()
            proc.join(10)
        naive_webhook = _naive_events(database_url, 2000, members)
        result = {
            "database": "postgresql" if args.postgres_url else "sqlite",
            "one_click": ours,
            "one_click_naive": naive,
            "one_click_p99_ratio_naive_over_ours": round(float(naive["p99_ms"]) / max(float(ours["p99_ms"]), 0.001), 1),  # type: ignore[arg-type]
            "one_click_goal_met": float(ours["p99_ms"]) <= 50 and ours["errors"] == 0,  # type: ignore[arg-type]
            "webhook": webhook,
            "webhook_naive": naive_webhook,
            "webhook_ratio_ours_over_naive": round(float(webhook["events_per_second"])  # type: ignore[arg-type]
                                                   / float(naive_webhook["events_per_second"]), 1),  # type: ignore[arg-type]
            "webhook_goal_met": float(webhook["events_per_second"]) >= 10_000,  # type: ignore[arg-type]
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
