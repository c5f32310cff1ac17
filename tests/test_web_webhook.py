"""SendGrid's Event Webhook: signed with a key pair made here, stored once per sg_event_id,
statuses changed with an audit row, opens and clicks counted per run, uncertain batches settled."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from web_support import Web, make_web

from newsletter.db import Database
from newsletter.delivery import (
    MemoryTransport,
    OutcomeUnknown,
    TransportResponse,
    event_counts,
    list_batches,
    send_edition,
)
from newsletter.members import find_subscriber
from newsletter.models import AuditEntry, BatchAudit, DeliveryEvent

URL = "/webhooks/sendgrid"


class Signer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "content-type": "application/json"}


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def web(tmp_path: Path, db: Database, db_url: str, signer: Signer) -> Web:
    return make_web(tmp_path, db, db_url, sendgrid_webhook_public_key=signer.public, batch_size=2)


def _sent(web: Web, transport: MemoryTransport | None = None) -> MemoryTransport:
    transport = transport or MemoryTransport()
    send_edition(web.db, web.settings, web.build, segments=["wales"], transport=transport)
    return transport


def _events(transport: MemoryTransport, name: str, prefix: str, **extra: object) -> list[dict[str, object]]:
    """One event per recipient of every request the transport got, as SendGrid would post them
    (custom_args at the top level of each event)."""
    out = []
    for request in transport.requests:
        for i, p in enumerate(request.json()["personalizations"]):
            out.append({"email": p["to"][0]["email"], "timestamp": int(time.time()), "event": name,
                        "sg_event_id": f"{prefix}-{request.batch_seq}-{i}", "sg_message_id": "m.1",
                        **p["custom_args"], **extra})
    return out


def _for(transport: MemoryTransport, name: str, email: str, **extra: object) -> dict[str, object]:
    """The event `name` for one member (by address)."""
    (event,) = [e for e in _events(transport, name, f"{name}-{email}", **extra) if e["email"] == email]
    return event


def _post(web: Web, signer: Signer, events: list[dict[str, object]], timestamp: int | None = None):  # type: ignore[no-untyped-def]
    body = json.dumps(events).encode()
    return web.client.post(URL, content=body, headers=signer.headers(body, timestamp))


def _stored(web: Web) -> int:
    with web.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryEvent)) or 0)


def test_valid_signature_stores_and_counts(web: Web, signer: Signer) -> None:
    transport = _sent(web)
    events = (_events(transport, "delivered", "d") + _events(transport, "open", "o")
              + _events(transport, "open", "mpp", sg_machine_open=True) + _events(transport, "click", "c")[:1])
    response = _post(web, signer, events)
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == len(events) == _stored(web)
    run_id = transport.requests[0].json()["personalizations"][0]["custom_args"]["run"]
    counts = event_counts(web.db, [int(run_id)])[int(run_id)]
    assert (counts.delivered, counts.opens, counts.machine_opens, counts.clicks, counts.unique_openers) == (3, 3, 3, 1, 3)


def test_bad_or_missing_signature_or_old_timestamp_is_refused_and_nothing_stored(web: Web, signer: Signer) -> None:
    transport = _sent(web)
    body = json.dumps(_events(transport, "bounce", "b")).encode()
    good = signer.headers(body)
    assert web.client.post(URL, content=body, headers={"content-type": "application/json"}).status_code == 403
    other = Signer().headers(body)
    assert web.client.post(URL, content=body, headers=other).status_code == 403
    tampered = body.replace(b"bounce", b"open_x", 1)
    assert web.client.post(URL, content=tampered, headers=good).status_code == 403
    garbage = {**good, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"}
    assert web.client.post(URL, content=body, headers=garbage).status_code == 403
    assert _post(web, signer, json.loads(body), timestamp=int(time.time()) - 301).status_code == 403
    assert _stored(web) == 0
    with web.db.session() as session:
        assert find_subscriber(session, web.members[0]).status == "active"


def test_replayed_batch_is_stored_once_and_changes_status_once(web: Web, signer: Signer) -> None:
    transport = _sent(web)
    events = [_for(transport, "bounce", web.members[0], type="bounce"), _for(transport, "spamreport", web.members[1])]
    for _ in range(3):
        assert _post(web, signer, events).status_code == 200
    assert _stored(web) == 2
    with web.db.session() as session:
        assert find_subscriber(session, web.members[0]).status == "bounced"
        assert find_subscriber(session, web.members[1]).status == "complained"
        reasons = session.scalars(select(AuditEntry.reason).where(AuditEntry.actor == "webhook")).all()
    assert sorted(reasons) == ["SendGrid event: bounce (bounce)", "SendGrid event: spamreport"]


def test_unsubscribe_and_dropped_events_change_status(web: Web, signer: Signer) -> None:
    transport = _sent(web)
    events = [_for(transport, "group_unsubscribe", web.members[0]),
              _for(transport, "dropped", web.members[1], reason="Bounced Address"),
              _for(transport, "dropped", web.members[2], reason="Exceeded message size")]
    assert _post(web, signer, events).status_code == 200
    with web.db.session() as session:
        statuses = [find_subscriber(session, m).status for m in web.members[:3]]
    assert statuses == ["unsubscribed", "bounced", "active"]


def test_ten_thousand_events_in_one_request(web: Web, signer: Signer) -> None:
    transport = _sent(web)
    template = _events(transport, "delivered", "t")[0]
    events = [{**template, "event": ("delivered", "open", "processed", "click")[i % 4], "sg_event_id": f"bulk-{i:05d}"}
              for i in range(10_000)]
    body = json.dumps(events).encode()
    assert len(body) < 5 * 1024 * 1024
    started = time.perf_counter()
    response = web.client.post(URL, content=body, headers=signer.headers(body))
    assert response.status_code == 200 and response.json()["stored"] == 10_000
    assert time.perf_counter() - started < 30
    assert _stored(web) == 10_000


def test_body_over_5_mb_is_refused(web: Web, signer: Signer) -> None:
    body = b"[" + b" " * (5 * 1024 * 1024) + b"]"
    assert web.client.post(URL, content=body, headers=signer.headers(body)).status_code == 413
    assert _stored(web) == 0


def test_uncertain_batch_reconciled_by_events_is_not_resent(web: Web, signer: Signer) -> None:
    """wales has 3 members in batches of 2; both answers are lost (uncertain). Events for batch 0
    arrive: only batch 1 is sent again by --resend-uncertain."""
    lost = MemoryTransport(script=[OutcomeUnknown("connection reset after sending"),
                                   OutcomeUnknown("connection reset after sending")])
    _sent(web, lost)
    run_id = int(lost.requests[0].json()["personalizations"][0]["custom_args"]["run"])
    assert [b.status for b in list_batches(web.db, run_id)] == ["uncertain", "uncertain"]
    first = [r for r in lost.requests if r.batch_seq == 0][0]
    delivered = [e for e in _events(lost, "delivered", "rec") if e["batch"] == "0"]
    response = _post(web, signer, delivered)
    assert response.json()["batches_settled"] == [[run_id, 0]]
    assert [b.status for b in list_batches(web.db, run_id)] == ["accepted", "uncertain"]
    with web.db.session() as session:
        assert session.scalar(select(BatchAudit.actor).where(BatchAudit.run_id == run_id)) == "webhook"
    again = MemoryTransport(handler=lambda request: TransportResponse(202))
    send_edition(web.db, web.settings, web.build, segments=["wales"], transport=again, resend_uncertain=True)
    resent = sorted(again.recipients())
    first_batch = sorted(p["to"][0]["email"] for p in first.json()["personalizations"])
    assert resent and not set(resent) & set(first_batch)


def test_events_without_run_and_batch_find_their_batch_through_the_recipient(web: Web, signer: Signer) -> None:
    """Sends made before custom_args named run and batch: edition, segment and subscriber_id do."""
    lost = MemoryTransport(script=[OutcomeUnknown("lost")])
    _sent(web, lost)
    run_id = int(lost.requests[0].json()["personalizations"][0]["custom_args"]["run"])
    (seq,) = [b.seq for b in list_batches(web.db, run_id) if b.status == "uncertain"]
    events = [{k: v for k, v in e.items() if k not in ("run", "batch")}
              for e in _events(lost, "processed", "old") if e["batch"] == str(seq)]
    assert _post(web, signer, events).json()["batches_settled"] == [[run_id, seq]]
    assert {b.status for b in list_batches(web.db, run_id)} == {"accepted"}


def test_webhook_without_a_configured_key_refuses(tmp_path: Path, db: Database, db_url: str, signer: Signer) -> None:
    web = make_web(tmp_path, db, db_url)
    assert _post(web, signer, []).status_code == 403


def test_sends_show_prints_the_event_figures(web: Web, signer: Signer, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    transport = _sent(web)
    events = (_events(transport, "delivered", "d") + _events(transport, "open", "o")
              + _events(transport, "open", "m", sg_machine_open=True) + [_for(transport, "spamreport", web.members[0])])
    assert _post(web, signer, events).status_code == 200
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(web.settings.project_dir))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", web.settings.resolved_database_url)
    shown = cli("sends", "show", "2026-12")
    assert shown.exit_code == 0, shown.stderr
    assert "delivered 3" in shown.stdout and "opens 3 by 3 people (+3 machine opens" in shown.stdout
    assert "spam reports 1" in shown.stdout
    as_json = json.loads(cli("sends", "show", "2026-12", "--json").stdout)
    assert as_json[0]["events"]["delivered"] == 3 and as_json[0]["events"]["machine_opens"] == 3
