"""Helpers shared by the scheduling tests: a small edition, members, a loopback SendGrid sink."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import update

from newsletter.db import Database
from newsletter.models import ScheduledSend, Subscriber

DATA = Path(__file__).resolve().parent / "data" / "schedule"
EDITION = "2099-01"
MEMBERS = {
    "east": ["ann@example.org", "bob@example.org", "cat@example.org", "dev@example.org",
             "eve@example.org"],
    "london": ["fay@example.org", "gus@example.org"],
    "scotland": ["hal@example.org", "ivy@example.org", "jon@example.org"],
}


def install_edition(project: Path) -> Path:
    """Copy the test edition (manifest + articles) into the project; returns the manifest path.
    The sample recurring digest is removed, so no daemon of these tests prepares it."""
    target = project / "issues"
    shutil.copytree(DATA / "issues", target, dirs_exist_ok=True)
    shutil.rmtree(target / "digests", ignore_errors=True)
    return target / "edition.yaml"


def add_members(db: Database) -> None:
    with db.session() as session:
        for region, emails in MEMBERS.items():
            for email in emails:
                session.add(Subscriber(
                    email=email, email_key=email, first_name=email.split("@")[0].title(),
                    region=region, status="active",
                ))
        # Not active: never sent to.
        session.add(Subscriber(email="gone@example.org", email_key="gone@example.org",
                               region="east", status="unsubscribed"))


def set_send_at(db: Database, edition: str, segment: str, when: datetime) -> None:
    with db.write_session() as session:
        session.execute(update(ScheduledSend).where(
            ScheduledSend.edition == edition, ScheduledSend.segment == segment,
        ).values(send_at=when))


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Sink:
    """Records every Mail Send request's recipients as it arrives, then (optionally) waits before
    answering 202, so a test can kill a sender while a request is in flight."""

    url: str
    delay: float = 0.0
    requests: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def emails(self) -> list[str]:
        with self.lock:
            return [e for r in self.requests for e in r]

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)


@contextmanager
def loopback_sink(delay: float = 0.0) -> Iterator[Sink]:
    sink = Sink(url="", delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            emails = [to["email"] for p in body["personalizations"] for to in p["to"]]
            with sink.lock:
                sink.requests.append(emails)
            time.sleep(sink.delay)
            try:
                self.send_response(202)
                self.send_header("X-Message-Id", f"sink-{len(sink.requests)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender died while we waited

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
