"""The `.eml` preview of a variant: the message a sample member would receive.

Per-recipient tokens are filled with a sample member's values; the headers mirror what delivery
sends (From, To, Subject, Date, Message-ID, List-Unsubscribe with One-Click). Everything is derived
from the edition and settings, so the file is byte-identical across rebuilds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from newsletter.render.placeholders import substitution_values

SAMPLE_FIRST_NAME = "Alex"
SAMPLE_NAME = "Alex Example"
SAMPLE_EMAIL = "alex@example.org"
SAMPLE_TOKEN = "sample-token"
# Used for Date when a variant has no send time: fixed, so previews stay byte-identical.
FALLBACK_DATE = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SampleRecipient:
    first_name: str = SAMPLE_FIRST_NAME
    name: str = SAMPLE_NAME
    email: str = SAMPLE_EMAIL
    token: str = SAMPLE_TOKEN


def sample_substitutions(public_base_url: str, recipient: SampleRecipient) -> dict[str, str]:
    base = public_base_url.rstrip("/")
    return substitution_values(
        first_name=recipient.first_name, email=recipient.email,
        unsubscribe_url=f"{base}/u/{recipient.token}", preferences_url=f"{base}/p/{recipient.token}",
    )


def substitute(text: str, values: dict[str, str]) -> str:
    for token, value in values.items():
        text = text.replace(token, value)
    return text


def preview_message(
    *, html: str, text: str, subject: str, from_name: str, from_email: str, reply_to: str | None,
    public_base_url: str, message_id: str, date: datetime | None,
    recipient: SampleRecipient | None = None,
) -> bytes:
    """A multipart/alternative message (text/plain first, then text/html) as bytes."""
    recipient = recipient or SampleRecipient()
    values = sample_substitutions(public_base_url, recipient)
    msg = EmailMessage(policy=policy.SMTP)
    from_user, _, from_domain = from_email.partition("@")
    msg["From"] = Address(from_name, from_user, from_domain)
    to_user, _, to_domain = recipient.email.partition("@")
    msg["To"] = Address(recipient.name, to_user, to_domain)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or FALLBACK_DATE)
    msg["Message-ID"] = message_id
    msg["MIME-Version"] = "1.0"
    msg["List-Unsubscribe"] = f"<{values['-unsubscribe_url-']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(substitute(text, values), subtype="plain", charset="utf-8", cte="quoted-printable")
    # base64 for the HTML: MJML emits long lines, and base64 is much faster to encode than QP
    msg.add_alternative(substitute(html, values), subtype="html", charset="utf-8", cte="base64")
    # a fixed boundary keeps the file byte-identical across builds (the default is random)
    msg.set_boundary("=_newsletter_alternative_" + message_id.strip("<>").replace("@", "_at_"))
    return msg.as_bytes()
