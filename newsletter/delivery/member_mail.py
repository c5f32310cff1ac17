"""One-off messages that are not an edition: to one member, the sign-up confirmation (double
opt-in) and the erasure confirmation; to the comms team, notices (newsletter.delivery.notices).
They go through the configured transport like an edition's batches (the outbox by default, as
`<outbox>/_member-mail/<kind>/<id>.json`, notices under `_notices/`), with tracking off so the
link in them is never rewritten, and custom_args naming the kind (the event webhook counts them
nowhere).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

from sendgrid.helpers.mail import (
    ClickTracking,
    Content,
    CustomArg,
    From,
    Mail,
    OpenTracking,
    Personalization,
    ReplyTo,
    To,
    TrackingSettings,
)

from newsletter.config import Settings
from newsletter.delivery.transports import ConnectionFailed, MailRequest, OutcomeUnknown, Transport
from newsletter.errors import DeliveryError

MEMBER_MAIL = "_member-mail"  # the outbox folder (an edition id never starts with "_")
NOTICES = "_notices"  # the outbox folder of notices to the comms team
SIGNUP_CONFIRMATION = "signup-confirmation"
ERASURE_CONFIRMATION = "erasure-confirmation"


@dataclass(frozen=True)
class MemberMessage:
    kind: str
    to: str
    subject: str
    text: str
    html: str
    folder: str = MEMBER_MAIL  # the outbox folder it is filed under


class MemberMailFailed(DeliveryError):
    """The message could not be handed to the provider (the person may try again later)."""


def _html(paragraphs: list[str], link: str | None, button: str, settings: Settings) -> str:
    body = "".join(f'<p style="margin:0 0 16px;white-space:pre-wrap">{html.escape(p)}</p>' for p in paragraphs)
    footer = html.escape(settings.organisation) + (f"<br>{html.escape(settings.postal_address)}"
                                                   if settings.postal_address else "")
    action = (
        f'<p style="margin:0 0 24px"><a href="{html.escape(link)}" style="display:inline-block;background:#0b4f6c;'
        f'color:#ffffff;padding:12px 20px;border-radius:4px;text-decoration:none">{html.escape(button)}</a></p>'
        f'<p style="margin:0 0 16px;font-size:14px;color:#52606d">Or copy this link: {html.escape(link)}</p>'
    ) if link else ""
    return (
        '<!doctype html><html lang="en-GB"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(button)}</title></head>"
        '<body style="margin:0;padding:24px;background:#eef1f4;font-family:Arial,Helvetica,sans-serif;'
        'color:#1f2933;font-size:16px;line-height:1.5">'
        '<div style="max-width:560px;margin:0 auto;background:#ffffff;padding:24px;border-radius:6px">'
        f"{body}{action}"
        f'<p style="margin:0;font-size:13px;color:#52606d">{footer}</p>'
        "</div></body></html>"
    )


def signup_confirmation(settings: Settings, to: str, first_name: str | None, link: str) -> MemberMessage:
    greeting = f"Hello {first_name}," if first_name else "Hello,"
    ask = (f"Please confirm that you would like the {settings.organisation} digest sent to this address. "
           "Open the link below and press the button on the page.")
    note = "The link works for 48 hours. If you did not ask for this, ignore this email: we will not write again."
    text = (f"{greeting}\n\n{ask}\n\n{link}\n\n{note}\n\n{settings.organisation}\n"
            f"{settings.postal_address}\n").rstrip() + "\n"
    return MemberMessage(SIGNUP_CONFIRMATION, to, f"Confirm your subscription to the {settings.organisation} digest",
                         text, _html([greeting, ask, note], link, "Confirm my subscription", settings))


def erasure_confirmation(settings: Settings, to: str, first_name: str | None, link: str) -> MemberMessage:
    greeting = f"Hello {first_name}," if first_name else "Hello,"
    ask = (f"You asked {settings.organisation} to erase everything it holds about this address. "
           "Open the link below and press the button on the page to confirm. This cannot be undone.")
    note = "The link works for 24 hours. If you did not ask for this, ignore this email: nothing will change."
    text = (f"{greeting}\n\n{ask}\n\n{link}\n\n{note}\n\n{settings.organisation}\n"
            f"{settings.postal_address}\n").rstrip() + "\n"
    return MemberMessage(ERASURE_CONFIRMATION, to, "Confirm the erasure of your data", text,
                         _html([greeting, ask, note], link, "Erase my data", settings))


def notice_message(settings: Settings, to: str, kind: str, subject: str, paragraphs: list[str],
                   link: str | None = None, link_label: str = "Open") -> MemberMessage:
    """A notice to the comms team: plain paragraphs (what happened, what to run) and an optional link."""
    text = "\n\n".join(paragraphs) + (f"\n\n{link_label}: {link}" if link else "")
    text += f"\n\n-- \nnewsletter, {settings.organisation}\n"
    return MemberMessage(kind, to, subject, text, _html(paragraphs, link, link_label if link else subject, settings),
                         folder=NOTICES)


def message_request(settings: Settings, message: MemberMessage, number: int) -> MailRequest:
    """The Mail Send request for one message (`number` names its outbox file)."""
    mail = Mail(from_email=From(settings.from_email, settings.from_name), subject=message.subject,
                plain_text_content=Content("text/plain", message.text),
                html_content=Content("text/html", message.html))
    if settings.reply_to:
        mail.reply_to = ReplyTo(settings.reply_to)
    person = Personalization()
    person.add_to(To(message.to))
    person.add_custom_arg(CustomArg("message", message.kind))
    mail.add_personalization(person)
    tracking = TrackingSettings()
    tracking.click_tracking = ClickTracking(False, False)
    tracking.open_tracking = OpenTracking(False)
    mail.tracking_settings = tracking
    body = json.dumps(mail.get(), separators=(",", ":")).encode("utf-8")
    return MailRequest(message.folder, message.kind, number, body, 1)


def send_member_message(transport: Transport, settings: Settings, message: MemberMessage, number: int) -> None:
    """Hand one message to the transport; MemberMailFailed when it was not accepted."""
    try:
        response = transport.send(message_request(settings, message, number))
    except (ConnectionFailed, OutcomeUnknown) as exc:
        raise MemberMailFailed(f"could not send the {message.kind} email: {exc}") from None
    if not 200 <= response.status < 300:
        raise MemberMailFailed(f"the provider refused the {message.kind} email (HTTP {response.status})")
