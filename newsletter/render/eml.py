"""The `.eml` preview of a variant: the message the sample member would receive.

Per-recipient tokens are filled with the sample member's values (placeholders.SAMPLE_RECIPIENT);
the headers mirror what delivery sends (From, To, Subject, Date, Message-ID, List-Id,
List-Unsubscribe with One-Click). Everything comes from the variant's build record and settings,
so the file is byte-identical across rebuilds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.generator import BytesGenerator
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from io import BytesIO

from newsletter.render.placeholders import SAMPLE_RECIPIENT, SampleRecipient, sample_values, substitute
from newsletter.render.record import VariantRecord

# Used for Date when a variant has no send time: fixed, so previews stay byte-identical.
FALLBACK_DATE = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_LINE_END = re.compile(r"\r\n|\r|\n")  # as the stdlib generator splits lines


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header's class once (the stdlib one makes a new
    class for every header it stores) and parsing each distinct text value of a header once (header
    objects are immutable; most headers are the same in every variant and every rebuild)."""

    CACHE_LIMIT = 4096

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: object) -> BaseHeader:
        if type(value) is not str:  # e.g. an Address: not parsed from text
            return super().__call__(name, value)
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            header = super().__call__(name, value)
            if len(self._parsed) >= self.CACHE_LIMIT:
                self._parsed.clear()
            self._parsed[key] = header
        return header


SMTP_POLICY = policy.SMTP.clone(header_factory=_HeaderClasses())


class _Generator(BytesGenerator):
    """The stdlib's bytes generator, writing a body's lines with one call (it writes each line
    and each line ending on its own, ~1,800 calls for a 50 KB HTML part). Same bytes."""

    def _write_lines(self, lines: str) -> None:
        if lines:
            self.write(_LINE_END.sub(self._NL, lines))


def list_id(from_name: str, from_email: str) -> str:
    """The List-Id header (RFC 2919) for the digest: `"<from name>" <local.domain>`, one list
    for every segment, so mail clients and filters see one newsletter."""
    local, _, domain = from_email.rpartition("@")
    label = _LABEL_UNSAFE.sub("-", local).strip("-") or "newsletter"
    phrase = from_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{phrase}" <{label}.{domain or "localhost"}>'


def list_unsubscribe(url: str, mailbox: str | None) -> str:
    """The List-Unsubscribe value: the one-click https link (RFC 8058) and, for clients that only
    send mail, a mailto: alternative to a mailbox a person reads (the reply-to address)."""
    value = f"<{url}>"
    return f"{value}, <mailto:{mailbox}?subject=unsubscribe>" if mailbox else value


def unsubscribe_mailbox(variant: VariantRecord) -> str:
    return variant.reply_to or variant.from_email


def preview_message(
    variant: VariantRecord, *, html: str, text: str, public_base_url: str, message_id: str,
    recipient: SampleRecipient = SAMPLE_RECIPIENT,
) -> bytes:
    """A multipart/alternative message (text/plain first, then text/html) as bytes."""
    values = sample_values(public_base_url, recipient)
    msg = EmailMessage(policy=SMTP_POLICY)
    from_user, _, from_domain = variant.from_email.partition("@")
    msg["From"] = Address(variant.from_name, from_user, from_domain)
    to_user, _, to_domain = recipient.email.partition("@")
    msg["To"] = Address(recipient.name, to_user, to_domain)
    if variant.reply_to:
        msg["Reply-To"] = variant.reply_to
    msg["Subject"] = variant.subject
    msg["Date"] = format_datetime(variant.send_at or FALLBACK_DATE)
    msg["Message-ID"] = message_id
    msg["MIME-Version"] = "1.0"
    if variant.list_id:
        msg["List-Id"] = variant.list_id
    msg["List-Unsubscribe"] = list_unsubscribe(values["-unsubscribe_url-"], unsubscribe_mailbox(variant))
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(substitute(text, values), subtype="plain", charset="utf-8", cte="quoted-printable")
    # base64 for the HTML: MJML emits long lines, and base64 is much faster to encode than QP
    msg.add_alternative(substitute(html, values), subtype="html", charset="utf-8", cte="base64")
    # a fixed boundary keeps the file byte-identical across builds (the default is random)
    msg.set_boundary("=_newsletter_alternative_" + message_id.strip("<>").replace("@", "_at_"))
    out = BytesIO()
    _Generator(out, mangle_from_=False, policy=msg.policy).flatten(msg, unixfrom=False)  # as as_bytes()
    return out.getvalue()
