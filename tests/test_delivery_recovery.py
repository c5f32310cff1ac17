"""Settling uncertain batches one by one: marked delivered (by a person or by SendGrid's events) or
re-queued, each audited; `--resend-uncertain` sends only the batches nobody settled."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from delivery_support import make_project, project_settings, seed_members

from newsletter.db import Database
from newsletter.delivery import (
    batch_audit,
    batch_of_recipient,
    list_batches,
    mark_batch_delivered,
    requeue_batch,
)
from newsletter.delivery.send import send_edition
from newsletter.delivery.transports.base import MailRequest, OutcomeUnknown, TransportResponse
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.errors import InputError, NotFound


class LosingAnswers(MemoryTransport):
    """Processes every request (like SendGrid) but loses the answer of the batches named."""

    def __init__(self, lose: set[int]) -> None:
        super().__init__()
        self.lose = lose
        self.processed: list[str] = []

    def send(self, request: MailRequest) -> TransportResponse:
        self.processed.extend(p["to"][0]["email"] for p in request.json()["personalizations"])
        if request.batch_seq in self.lose:
            self.lose.discard(request.batch_seq)
            raise OutcomeUnknown("no answer after sending")
        return super().send(request)


@pytest.fixture
def uncertain_run(tmp_path: Path, db: Database, db_url: str):  # type: ignore[no-untyped-def]
    build = make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 50})
    settings = project_settings(tmp_path, db_url, batch_size=10, concurrency=2)
    transport = LosingAnswers({0, 1, 2, 3, 4})  # every batch processed, every answer lost
    reports = send_edition(db, settings, build, transport=transport)
    assert reports[0].uncertain == 50
    return build, settings, transport, reports[0].run_id, active


def test_only_unsettled_batches_are_resent(uncertain_run, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings, transport, run_id, active = uncertain_run
    # SendGrid's events arrive for batches 0, 1 and 2: the webhook marks them delivered
    for seq in (0, 1, 2):
        change = mark_batch_delivered(db, run_id, seq, actor="webhook", reason="processed event")
        assert change.changed and change.old_status == "uncertain" and change.new_status == "accepted"
    again = mark_batch_delivered(db, run_id, 0, actor="webhook", reason="delivered event")
    assert not again.changed  # the next event of the same batch changes nothing
    report = send_edition(db, settings, build, transport=transport, resend_uncertain=True)[0]
    assert report.accepted == 50 and report.uncertain == 0 and report.status == "finished"
    counts = Counter(transport.processed)
    assert set(counts) == set(active)
    assert sum(1 for n in counts.values() if n == 2) == 20  # only the two batches nobody settled
    audit = batch_audit(db, run_id)
    assert [(a.seq, a.actor, a.action, a.old_status, a.new_status) for a in audit] == [
        (s, "webhook", "mark-delivered", "uncertain", "accepted") for s in (0, 1, 2)]


def test_requeue_one_batch_sends_only_that_one(uncertain_run, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings, transport, run_id, _ = uncertain_run
    change = requeue_batch(db, run_id, 3, actor="cli:ann", reason="not in the Activity feed")
    assert change.changed and change.new_status == "pending"
    before = len(transport.processed)
    report = send_edition(db, settings, build, transport=transport)[0]  # no --resend-uncertain
    assert len(transport.processed) - before == 10
    assert report.accepted == 10 and report.uncertain == 40
    assert [b.seq for b in list_batches(db, run_id, "uncertain")] == [0, 1, 2, 4]
    (row,) = batch_audit(db, run_id)
    assert (row.actor, row.action, row.reason, row.seq) == ("cli:ann", "resend", "not in the Activity feed", 3)


def test_settling_refuses_the_wrong_state_and_needs_a_reason(uncertain_run, db: Database) -> None:  # type: ignore[no-untyped-def]
    _, _, _, run_id, _ = uncertain_run
    mark_batch_delivered(db, run_id, 0, actor="cli:ann", reason="seen")
    with pytest.raises(InputError, match="is accepted"):
        requeue_batch(db, run_id, 0, actor="cli:ann", reason="oops")  # never resend a delivered batch
    with pytest.raises(InputError, match="why"):
        mark_batch_delivered(db, run_id, 1, actor="cli:ann", reason="  ")
    with pytest.raises(NotFound):
        mark_batch_delivered(db, run_id, 99, actor="cli:ann", reason="x")
    assert len(batch_audit(db, run_id)) == 1


def test_batch_of_recipient_finds_the_batch_for_old_events(uncertain_run, db: Database) -> None:  # type: ignore[no-untyped-def]
    _, _, _, run_id, _ = uncertain_run
    seqs = {batch_of_recipient(db, "2026-12", sid) for sid in range(1, 51)}
    assert seqs == {(run_id, s) for s in range(5)}
    assert batch_of_recipient(db, "2026-12", 999) is None


def test_cli_lists_and_resolves_batches(uncertain_run, db: Database, db_url: str, cli, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, _, run_id, _ = uncertain_run
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    listed = cli("sends", "batches", str(run_id), "--state", "uncertain")
    assert listed.exit_code == 0 and listed.stdout.count("uncertain") == 5 and "accepted" not in listed.stdout
    no_reason = cli("sends", "resolve", str(run_id), "2", "--delivered", "--yes")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.stderr
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    refused = cli("sends", "resolve", str(run_id), "2", "--delivered", "--reason", "seen")  # answers no
    assert refused.exit_code == 1 and "nothing was changed" in refused.stderr
    done = cli("sends", "resolve", str(run_id), "2", "--delivered", "--reason", "seen in the feed", "--yes")
    assert done.exit_code == 0 and "uncertain → delivered" in done.stdout
    resend = cli("sends", "resolve", str(run_id), "4", "--resend", "--reason", "not in the feed", "--yes")
    assert resend.exit_code == 0 and "next `send`" in resend.stdout
    left = cli("sends", "batches", str(run_id), "--state", "uncertain", "--json")
    assert [b["seq"] for b in json.loads(left.stdout)] == [0, 1, 3]
    bad = cli("sends", "batches", str(run_id), "--state", "lost")
    assert bad.exit_code == 2 and "unknown batch state" in bad.stderr
    assert [(a.seq, a.action) for a in batch_audit(db, run_id)] == [(2, "mark-delivered"), (4, "resend")]
    assert all(a.actor.startswith("cli:") for a in batch_audit(db, run_id))
