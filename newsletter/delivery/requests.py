"""SendGrid v3 Mail Send request bodies: one per batch of at most 1,000 recipients.

The message-level part (from, reply-to, subject, the variant's text and HTML content, categories,
tracking and mail settings) is serialised ONCE per variant; each request adds only the
personalizations (to + name, substitutions, List-Unsubscribe headers, custom_args).

`helper_mail` builds the same request with the official `sendgrid.helpers.mail` classes. It is the
reference shape; `MailBuilder` produces identical JSON (tests/test_transports.py proves it) without
creating several helper objects per recipient, which matters at 1,000,000 recipients.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sendgrid.helpers.mail import (
    Category,
    ClickTracking,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    OpenTracking,
    Personalization,
    ReplyTo,
    SandBoxMode,
    SubscriptionTracking,
    Substitution,
    To,
    TrackingSettings,
)

from newsletter.delivery.tokens import LINK_MAC_LENGTH as _MAC
from newsletter.delivery.tokens import PREFERENCES, UNSUBSCRIBE, LinkTokens, make_token
from newsletter.render import list_unsubscribe, substitution_values

MAX_PERSONALIZATIONS = 1000
_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # str -> quoted JSON string


@dataclass(frozen=True)
class VariantToSend:
    """One built variant, ready to send: the edition's content for one segment."""

    edition: str
    segment: str
    subject: str
    html: str
    text: str
    sha256: str
    from_email: str
    from_name: str
    list_id: str | None = None  # List-Id header, the same for every recipient
    unsubscribe_mailbox: str | None = None  # the mailto: alternative in List-Unsubscribe


@dataclass(frozen=True)
class MessageOptions:
    public_base_url: str
    secret: bytes
    reply_to: str | None = None
    sandbox: bool = False
    click_tracking: bool = False
    open_tracking: bool = False


class RecipientRow(NamedTuple):
    """One frozen recipient as the request needs it (immutable; a tuple, because a send makes one
    per recipient and a frozen dataclass's __init__ cost more than the rest of reading the row)."""

    subscriber_id: int
    email: str
    name: str | None
    first_name: str


def unsubscribe_url(options: MessageOptions, subscriber_id: int) -> str:
    return f"{options.public_base_url.rstrip('/')}/u/{make_token(options.secret, subscriber_id, UNSUBSCRIBE)}"


def preferences_url(options: MessageOptions, subscriber_id: int) -> str:
    return f"{options.public_base_url.rstrip('/')}/p/{make_token(options.secret, subscriber_id, PREFERENCES)}"


def substitutions(options: MessageOptions, r: RecipientRow) -> dict[str, str]:
    return substitution_values(
        first_name=r.first_name, email=r.email,
        unsubscribe_url=unsubscribe_url(options, r.subscriber_id),
        preferences_url=preferences_url(options, r.subscriber_id),
    )


def _categories(variant: VariantToSend) -> list[str]:
    return list(dict.fromkeys(c[:255] for c in (variant.edition, variant.segment)))


def helper_mail(
    variant: VariantToSend, options: MessageOptions, recipients: Sequence[RecipientRow],
    run_id: int | None = None, batch: int | None = None,
) -> Mail:
    """The request built with the official helper classes (reference implementation). With a run
    id and batch seq, each personalization's custom_args name them too, so SendGrid's events can
    be tied to the batch that carried them."""
    mail = Mail(
        from_email=From(variant.from_email, variant.from_name),
        subject=variant.subject,
        plain_text_content=Content("text/plain", variant.text),
        html_content=Content("text/html", variant.html),
    )
    if options.reply_to:
        mail.reply_to = ReplyTo(options.reply_to)
    for category in reversed(_categories(variant)):  # add_category inserts at the front
        mail.add_category(Category(category))
    tracking = TrackingSettings()
    tracking.click_tracking = ClickTracking(options.click_tracking, options.click_tracking)
    tracking.open_tracking = OpenTracking(options.open_tracking)
    # never a second footer from an account-level setting: the template has its own unsubscribe
    tracking.subscription_tracking = SubscriptionTracking(False)
    mail.tracking_settings = tracking
    if variant.list_id:
        mail.header = Header("List-Id", variant.list_id)
    if options.sandbox:
        settings = MailSettings()
        settings.sandbox_mode = SandBoxMode(True)
        mail.mail_settings = settings
    for r in recipients:
        p = Personalization()
        p.add_to(To(r.email, r.name) if r.name else To(r.email))
        for key, value in substitutions(options, r).items():
            p.add_substitution(Substitution(key, value))
        p.add_header(Header("List-Unsubscribe",
                            list_unsubscribe(unsubscribe_url(options, r.subscriber_id), variant.unsubscribe_mailbox)))
        p.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        p.add_custom_arg(CustomArg("edition", variant.edition))
        p.add_custom_arg(CustomArg("segment", variant.segment))
        if run_id is not None:
            p.add_custom_arg(CustomArg("run", str(run_id)))
            p.add_custom_arg(CustomArg("batch", str(batch)))
        p.add_custom_arg(CustomArg("subscriber_id", str(r.subscriber_id)))
        mail.add_personalization(p, index=len(mail.personalizations or []))
    return mail


def _html_json(value: str, value_json: str) -> str:
    """`value` HTML-escaped, as a JSON string; `value_json` (its JSON form) when nothing needs
    escaping, as for almost every name and address (one look for each character instead of
    html.escape's five replacements and a second JSON escape)."""
    if "&" in value or "<" in value or ">" in value or '"' in value or "'" in value:
        return _escape(html.escape(value))
    return value_json


class MailBuilder:
    """Fast request bodies for one variant: the shared part is serialised once, and each
    personalization is written straight to JSON (strings escaped by the json module's own C
    escaper), which is several times faster than building helper objects or dicts per recipient."""

    def __init__(self, variant: VariantToSend, options: MessageOptions, run_id: int | None = None) -> None:
        self.variant = variant
        self.options = options
        self.run_id = run_id
        shared = helper_mail(variant, options, []).get()
        shared.pop("personalizations", None)
        encoded = json.dumps(shared, separators=(",", ":"))
        self._suffix = "]," + encoded[1:]
        base = _escape(options.public_base_url.rstrip("/"))[1:-1]
        self._unsubscribe_base, self._preferences_base = base + "/u/", base + "/p/"
        self._mailto = _escape(list_unsubscribe("", variant.unsubscribe_mailbox))[3:-1]  # what follows "<>"
        self._link_tokens = LinkTokens(options.secret)  # both of a member's tokens from one digest
        self._args = ',"custom_args":{"edition":' + _escape(variant.edition) + ',"segment":' + _escape(variant.segment)
        if run_id is not None:
            self._args += f',"run":"{int(run_id)}","batch":"'

    def _tail(self, batch: int | None) -> str:
        if self.run_id is None:
            return self._args + ',"subscriber_id":"'
        if batch is None:
            raise ValueError("a builder for a send run needs the batch seq")
        return f'{self._args}{int(batch)}","subscriber_id":"'

    def body(self, recipients: Sequence[RecipientRow], batch: int | None = None) -> bytes:
        """The request, in one pass over the recipients: their link MACs computed together (one
        base64 pass), the HTML-escaping check made once for the batch (names and addresses
        almost never need it), then one f-string per personalization, one join and one encode
        of the whole ~1 MB body."""
        if not 1 <= len(recipients) <= MAX_PERSONALIZATIONS:
            raise ValueError(f"a request takes 1 to {MAX_PERSONALIZATIONS} recipients, not {len(recipients)}")
        tail = self._tail(batch)
        macs = self._link_tokens.macs([r.subscriber_id for r in recipients])
        probe = "".join([r.email + r.first_name for r in recipients])
        plain = not ("&" in probe or "<" in probe or ">" in probe or '"' in probe or "'" in probe)
        unsubscribe_base, preferences_base, mailto = self._unsubscribe_base, self._preferences_base, self._mailto
        parts = []
        at = 0
        for r in recipients:
            sid = r.subscriber_id
            email = _escape(r.email)
            first_name = _escape(r.first_name)
            to = f'{{"email":{email},"name":{_escape(r.name)}}}' if r.name else f'{{"email":{email}}}'
            unsubscribe = f"{unsubscribe_base}{sid}.{macs[at:at + _MAC]}"
            preferences = f"{preferences_base}{sid}.{macs[at + _MAC:at + 2 * _MAC]}"
            at += 2 * _MAC
            parts.append(
                f'{{"to":[{to}],"headers":{{"List-Unsubscribe":"<{unsubscribe}>{mailto}",'
                f'"List-Unsubscribe-Post":"List-Unsubscribe=One-Click"}},'
                f'"substitutions":{{"-first_name-":{first_name},'
                f'"-first_name_html-":{first_name if plain else _html_json(r.first_name, first_name)},'
                f'"-email-":{email},"-email_html-":{email if plain else _html_json(r.email, email)},'
                f'"-unsubscribe_url-":"{unsubscribe}","-preferences_url-":"{preferences}"}}'
                f'{tail}{sid}"}}}}'
            )
        parts[0] = '{"personalizations":[' + parts[0]
        parts[-1] += self._suffix
        return ",".join(parts).encode("ascii")
