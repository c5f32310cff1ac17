"""The outcome journal: what SendGrid answered for a batch, kept on local disk while the database
cannot take it (restarting, locked), so a 202 is never forgotten.

A sender appends one JSON line per outcome it could not write at once (fsync'd before it retries
the database), and removes its file when every outcome reached the database. The next run replays
the files of senders that are gone before it claims anything: each line is the same compare-and-set
the sender would have made (the batch is still in flight or uncertain, and still claimed by that
sender), so replaying twice, or a line the sender did write after all, changes nothing.

The journal lives next to a SQLite database (`<file>.outcomes/`), or in the outbox directory
(`<outbox>/.outcomes/`) for PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import make_url

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.leases import HOST, process_exited
from newsletter.models import Batch, BatchStatus, utcnow

log = logging.getLogger("newsletter.delivery")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DATES = ("not_before",)
_ACTIVE: set[str] = set()  # sender ids of this process still running
_ACTIVE_LOCK = threading.Lock()


def journal_dir(settings: Settings, db: Database) -> Path:
    url = make_url(str(db.engine.url))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        return path.with_name(path.name + ".outcomes")
    return settings.resolved_outbox_dir / ".outcomes"


def _file_name(sender_id: str) -> str:
    return _UNSAFE.sub("_", sender_id) + ".jsonl"


class OutcomeJournal:
    """One sender's journal file (created on first use)."""

    def __init__(self, directory: Path, sender_id: str) -> None:
        self.directory, self.sender_id = Path(directory), sender_id
        self.path = self.directory / _file_name(sender_id)
        self.lock = threading.Lock()
        self.unwritten: set[int] = set()  # batch ids whose outcome is only here
        with _ACTIVE_LOCK:
            _ACTIVE.add(sender_id)

    def record(self, batch_id: int, values: dict[str, object]) -> None:
        line = {"batch_id": batch_id, "sender": self.sender_id, "pid": os.getpid(), "host": HOST,
                "values": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}}
        with self.lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, (json.dumps(line) + "\n").encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:  # the database write is still retried; only the safety net is missing
                log.error("cannot write outcome journal %s: %s", self.path, exc)
                return
            self.unwritten.add(batch_id)

    def written(self, batch_id: int) -> None:
        with self.lock:
            self.unwritten.discard(batch_id)

    def close(self) -> None:
        """The sender is done: drop the file when every outcome in it reached the database."""
        with self.lock:
            if not self.unwritten:
                try:
                    self.path.unlink(missing_ok=True)
                except OSError:
                    pass  # no journal was written (its directory cannot exist)
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self.sender_id)


def _owner_gone(entry: dict[str, object]) -> bool:
    if entry.get("host") == HOST and int(str(entry.get("pid", "0"))) == os.getpid():
        with _ACTIVE_LOCK:  # a sender of this process: gone once it has finished
            return entry.get("sender") not in _ACTIVE
    # The lease rule's process test; another host's journal is replayed by that host's next run.
    return process_exited(str(entry.get("sender", "")))


def replay_journals(db: Database, directory: Path) -> int:
    """Apply the journals of senders that are gone; returns the number of batches settled."""
    if not directory.is_dir():
        return 0
    settled = 0
    for path in sorted(directory.glob("*.jsonl")):
        try:
            lines = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            log.warning("cannot read outcome journal %s: %s", path, exc)
            continue
        if not lines or not _owner_gone(lines[0]):
            continue
        with db.write_session() as session:
            for entry in lines:
                values = dict(entry["values"])
                for key in _DATES:
                    if isinstance(values.get(key), str):
                        values[key] = datetime.fromisoformat(values[key])
                values["updated_at"] = utcnow()
                done = session.execute(
                    update(Batch).where(
                        Batch.id == int(entry["batch_id"]), Batch.claimed_by == entry["sender"],
                        Batch.status.in_([BatchStatus.IN_FLIGHT.value, BatchStatus.UNCERTAIN.value]))
                    .values(**values))
                settled += int(done.rowcount or 0)  # type: ignore[attr-defined]
        path.unlink(missing_ok=True)
        log.info("replayed outcome journal %s (%d lines)", path.name, len(lines))
    return settled
