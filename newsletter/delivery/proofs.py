"""Test sends (proofs): an edition's variants to a few addresses, before the real send.

    send_test(settings, build_dir, ["ann@example.org"], segments=["london"], transport=t)

Each variant goes as one request whose subject starts with `[TEST] `, filled in with the sample
member's values (the links in it are the sample's, which work for nobody), to the given addresses
only. Nothing is frozen and no send run or batch is made, so a test is never counted as a send,
and its custom_args name no run (the event webhook counts it nowhere). The `outbox` transport
writes it as `<outbox>/_test-sends/<edition>.<segment>/<n>.json`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sendgrid.helpers.mail import CustomArg, Header, Personalization, Substitution, To

from newsletter.config import Settings
from newsletter.delivery.requests import MessageOptions, VariantToSend, helper_mail
from newsletter.delivery.send import load_variants
from newsletter.delivery.transports import ConnectionFailed, MailRequest, OutcomeUnknown, Transport
from newsletter.errors import DeliveryError, InputError
from newsletter.members import normalise_email
from newsletter.render import sample_values

TEST_PREFIX = "[TEST] "
TEST_SENDS = "_test-sends"  # the outbox folder (an edition id never starts with "_")
MAX_ADDRESSES = 20


@dataclass(frozen=True)
class TestSend:
    edition: str
    segments: tuple[str, ...]
    addresses: tuple[str, ...]
    subjects: tuple[str, ...]


def proof_addresses(raw: Sequence[str]) -> tuple[str, ...]:
    """The addresses to send a test to, checked (InputError naming the bad one)."""
    found: list[str] = []
    for item in raw:
        for part in item.replace(";", ",").replace("\n", ",").split(","):
            if part.strip():
                try:
                    address = normalise_email(part.strip()).email
                except InputError as exc:
                    raise InputError(f"test address {part.strip()!r}: {exc.message}", hint=exc.hint) from None
                if address not in found:
                    found.append(address)
    if not found:
        raise InputError("give at least one address to send the test to")
    if len(found) > MAX_ADDRESSES:
        raise InputError(f"a test goes to at most {MAX_ADDRESSES} addresses, not {len(found)}")
    return tuple(found)


def _request(variant: VariantToSend, settings: Settings, addresses: Sequence[str], number: int) -> MailRequest:
    proof = VariantToSend(variant.edition, variant.segment, TEST_PREFIX + variant.subject, variant.html, variant.text,
                          variant.sha256, variant.from_email, variant.from_name)
    options = MessageOptions(public_base_url=settings.public_base_url, secret=b"", reply_to=settings.reply_to,
                             sandbox=settings.sandbox_mode)
    mail = helper_mail(proof, options, [])
    values = sample_values(settings.public_base_url)
    for address in addresses:
        person = Personalization()
        person.add_to(To(address))
        for key, value in values.items():
            person.add_substitution(Substitution(key, value))
        person.add_header(Header("List-Unsubscribe", f"<{values['-unsubscribe_url-']}>"))
        person.add_custom_arg(CustomArg("test", "true"))
        mail.add_personalization(person, index=len(mail.personalizations or []))
    body = json.dumps(mail.get(), separators=(",", ":")).encode("utf-8")
    return MailRequest(TEST_SENDS, f"{variant.edition}.{variant.segment}", number, body, len(addresses))


def send_test(settings: Settings, build_dir: Path, addresses: Sequence[str], *, transport: Transport,
              segments: Sequence[str] | None = None) -> TestSend:
    """Send each chosen variant (default: all) of the build to `addresses` as a `[TEST]`."""
    to = proof_addresses(addresses)
    edition, variants = load_variants(Path(build_dir))
    if segments:
        known = {v.segment for v in variants}
        unknown = [s for s in segments if s not in known]
        if unknown:
            raise InputError(f"segment {unknown[0]!r} is not in edition {edition}",
                             hint=f"its segments are: {', '.join(v.segment for v in variants)}")
        variants = [v for v in variants if v.segment in segments]
    number = time.time_ns() // 1000 % 10**12
    for i, variant in enumerate(variants):
        try:
            response = transport.send(_request(variant, settings, to, number + i))
        except (ConnectionFailed, OutcomeUnknown) as exc:
            raise DeliveryError(f"the test of {variant.segment} could not be sent: {exc}") from None
        if not 200 <= response.status < 300:
            raise DeliveryError(f"the provider refused the test of {variant.segment} (HTTP {response.status})",
                                hint=response.body[:300] or None)
    return TestSend(edition, tuple(v.segment for v in variants), to,
                    tuple(TEST_PREFIX + v.subject for v in variants))


__all__ = ["MAX_ADDRESSES", "TEST_PREFIX", "TEST_SENDS", "TestSend", "proof_addresses",
           "send_test"]
