"""Transports and request bodies: the fast builder equals the official helper's JSON; outbox files;
MemoryTransport scripting; SendGridTransport's classification of failures."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr
from stub_sendgrid import StubSendGrid

from newsletter.config import Settings
from newsletter.delivery.requests import (
    MailBuilder,
    MessageOptions,
    RecipientRow,
    VariantToSend,
    helper_mail,
)
from newsletter.delivery.transports import (
    ConnectionFailed,
    MailRequest,
    OutcomeUnknown,
    TransportResponse,
    make_transport,
)
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.delivery.transports.outbox import OutboxTransport
from newsletter.delivery.transports.sendgrid import SendGridTransport
from newsletter.errors import ConfigError, InputError

VARIANT = VariantToSend("2026-12", "wales", "Digest: <Wales> & more", "<p>Dear -first_name-</p>", "Dear -first_name-",
                        "0" * 64, "digest@example.org", "LPS Digest")
RECIPIENTS = [RecipientRow(1, "ann@example.org", "Ann O'Neil", "Ann"), RecipientRow(2, "bo@example.org", None, "colleague"),
              RecipientRow(3, "zoë@example.org", "Zoë =cmd()", "Zoë"),
              RecipientRow(4, "q@example.org", 'Q "the" \\ </script>', 'Q"\n\u2028'),
              RecipientRow(5, "o'neil&co@example.org", None, "Jo & <Al>")]  # HTML-escaped in the _html twins


@pytest.mark.parametrize("sandbox,tracking,reply_to", [(False, False, None), (True, True, "comms@example.org")])
def test_fast_builder_matches_official_helper(sandbox: bool, tracking: bool, reply_to: str | None) -> None:
    options = MessageOptions("https://news.example.org/", b"secret", reply_to, sandbox, tracking, tracking)
    expected = helper_mail(VARIANT, options, RECIPIENTS).get()
    assert json.loads(MailBuilder(VARIANT, options).body(RECIPIENTS)) == expected
    assert [p["to"][0]["email"] for p in expected["personalizations"]] == [r.email for r in RECIPIENTS]
    assert expected["content"][0]["type"] == "text/plain" and len(expected["content"]) == 2
    assert ("mail_settings" in expected) == sandbox


def test_list_id_mailto_unsubscribe_and_no_subscription_tracking() -> None:
    """List-Id for the whole request, a mailto: beside the one-click link, and SendGrid's own
    subscription footer switched off (the template has the unsubscribe link)."""
    variant = dataclasses.replace(VARIANT, list_id='"LPS Digest" <digest.example.org>',
                                  unsubscribe_mailbox="comms@example.org")
    options = MessageOptions("https://news.example.org/", b"secret")
    body = json.loads(MailBuilder(variant, options).body(RECIPIENTS))
    assert body == helper_mail(variant, options, RECIPIENTS).get()
    assert body["headers"] == {"List-Id": '"LPS Digest" <digest.example.org>'}
    assert body["tracking_settings"]["subscription_tracking"] == {"enable": False}
    first = body["personalizations"][0]["headers"]
    assert re.fullmatch(r"<https://news\.example\.org/u/1\.[\w-]+>, <mailto:comms@example\.org\?subject=unsubscribe>",
                        first["List-Unsubscribe"])
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_custom_args_name_the_run_and_batch() -> None:
    options = MessageOptions("https://news.example.org/", b"secret")
    body = json.loads(MailBuilder(VARIANT, options, run_id=7).body(RECIPIENTS, batch=12))
    assert body == helper_mail(VARIANT, options, RECIPIENTS, run_id=7, batch=12).get()
    assert [p["custom_args"] for p in body["personalizations"]][0] == {
        "edition": "2026-12", "segment": "wales", "run": "7", "batch": "12", "subscriber_id": "1"}
    with pytest.raises(ValueError):
        MailBuilder(VARIANT, options, run_id=7).body(RECIPIENTS)  # a run's request always names its batch


def test_builder_refuses_more_than_1000() -> None:
    builder = MailBuilder(VARIANT, MessageOptions("https://x.org", b"s"))
    with pytest.raises(ValueError):
        builder.body([RECIPIENTS[0]] * 1001)


def _request(seq: int = 3) -> MailRequest:
    body = MailBuilder(VARIANT, MessageOptions("https://x.org", b"s")).body(RECIPIENTS)
    return MailRequest("2026-12", "../wales", seq, body, len(RECIPIENTS))


def test_outbox_writes_each_request_atomically(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path / "outbox")
    response = transport.send(_request())
    path = tmp_path / "outbox" / "2026-12" / "_wales" / "000003.json"  # no path traversal
    assert response.status == 202 and json.loads(path.read_bytes()) == _request().json()
    assert [p.name for p in path.parent.iterdir()] == ["000003.json"]


def test_memory_transport_scripts_answers_and_faults() -> None:
    transport = MemoryTransport(script=[TransportResponse(500), OutcomeUnknown("lost")])
    assert transport.send(_request()).status == 500
    with pytest.raises(OutcomeUnknown):
        transport.send(_request())
    assert transport.send(_request()).status == 202
    assert len(transport.requests) == 3 and transport.recipients() == [r.email for r in RECIPIENTS]


def test_sendgrid_transport_posts_with_bearer_key() -> None:
    with StubSendGrid() as stub:
        transport = SendGridTransport("SG.secret-key", stub.url, timeout=2)
        response = transport.send(_request())
    assert response.status == 202 and response.header("x-message-id") == "stub-1"
    assert stub.recorded == [r.email for r in RECIPIENTS]
    assert "secret-key" not in repr(transport)


def test_sendgrid_transport_connection_refused_is_safe_to_retry() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionFailed):
        SendGridTransport("SG.k", f"http://127.0.0.1:{port}", timeout=1).send(_request())


def test_sendgrid_transport_timeout_after_sending_is_uncertain() -> None:
    with StubSendGrid(["timeout"], slow=1.0) as stub:
        with pytest.raises(OutcomeUnknown):
            SendGridTransport("SG.k", stub.url, timeout=0.3).send(_request())
        assert len(stub.recorded) == len(RECIPIENTS)


def test_sendgrid_transport_dropped_connection_is_uncertain() -> None:
    with StubSendGrid(["drop"]) as stub:
        with pytest.raises(OutcomeUnknown):
            SendGridTransport("SG.k", stub.url, timeout=2).send(_request())


def test_make_transport_choices(tmp_path: Path) -> None:
    plain = Settings(project_dir=tmp_path)
    assert make_transport(plain).name == "outbox"
    assert make_transport(plain, "memory").name == "memory"
    keyed = Settings(project_dir=tmp_path, sendgrid_api_key=SecretStr("SG.x"), sendgrid_host="https://api.eu.sendgrid.com")
    chosen = make_transport(keyed)
    assert chosen.name == "sendgrid" and "api.eu.sendgrid.com" in repr(chosen)
    with pytest.raises(ConfigError):
        make_transport(plain, "sendgrid")


def test_outbox_write_failure_is_not_sent_so_safe_to_retry(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConnectionFailed, match="outbox"):
        OutboxTransport(blocker / "outbox").send(_request())
    with pytest.raises(ConnectionFailed):
        OutboxTransport(Path("/proc/nope")).send(_request())


def test_make_transport_refuses_an_outbox_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    plain = Settings(project_dir=tmp_path)
    with pytest.raises(InputError, match=str(blocker / "outbox")) as caught:
        make_transport(plain, "outbox", outbox_dir=blocker / "outbox")
    assert caught.value.exit_code == 2
    with pytest.raises(InputError, match="/proc/nope"):
        make_transport(Settings(project_dir=tmp_path, outbox_dir=Path("/proc/nope")))
    assert make_transport(plain, outbox_dir=Path("deep/er/outbox")).name == "outbox"
    assert (tmp_path / "deep" / "er" / "outbox").is_dir()
