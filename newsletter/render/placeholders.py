"""Per-recipient placeholder tokens: a variant is rendered once, SendGrid fills these in per member.

SendGrid replaces a token with its value as plain text, in the HTML part as in the text part. A
member's name or address may contain `<`, `&` or quotes, so the HTML part uses tokens of its own
whose values are HTML-escaped (`-first_name_html-`), while the text part uses the raw ones
(`-first_name-`). The URL values are made by us from `public_base_url` and URL-safe tokens, so
they are the same in both parts.

The sample member (Alex Example) is the one set of values every preview uses: the `.eml` of a
build, and through it the preview page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

TEXT_TOKENS: dict[str, str] = {
    "first_name": "-first_name-",
    "email": "-email-",
    "unsubscribe_url": "-unsubscribe_url-",
    "preferences_url": "-preferences_url-",
}
HTML_TOKENS: dict[str, str] = {
    **TEXT_TOKENS,
    "first_name": "-first_name_html-",
    "email": "-email_html-",
}
_HTML_TO_TEXT = {
    HTML_TOKENS[name]: TEXT_TOKENS[name] for name in TEXT_TOKENS if HTML_TOKENS[name] != TEXT_TOKENS[name]
}


@dataclass(frozen=True)
class SampleRecipient:
    """Who previews are addressed to."""

    first_name: str = "Alex"
    name: str = "Alex Example"
    email: str = "alex@example.org"
    token: str = "sample-token"  # stands in for the signed unsubscribe/preferences token


SAMPLE_RECIPIENT = SampleRecipient()


def text_tokens_for(text: str) -> str:
    """Text derived from the HTML part carries the HTML tokens; swap them for the raw ones."""
    for html_token, text_token in _HTML_TO_TEXT.items():
        text = text.replace(html_token, text_token)
    return text


def substitution_values(
    *, first_name: str, email: str, unsubscribe_url: str, preferences_url: str
) -> dict[str, str]:
    """Every token's value for one recipient (raw for the text part, escaped for the HTML part)."""
    return {
        "-first_name-": first_name,
        "-first_name_html-": html.escape(first_name),
        "-email-": email,
        "-email_html-": html.escape(email),
        "-unsubscribe_url-": unsubscribe_url,
        "-preferences_url-": preferences_url,
    }


def sample_values(public_base_url: str, recipient: SampleRecipient = SAMPLE_RECIPIENT) -> dict[str, str]:
    """Every token's value for the sample member."""
    base = public_base_url.rstrip("/")
    return substitution_values(
        first_name=recipient.first_name, email=recipient.email,
        unsubscribe_url=f"{base}/u/{recipient.token}", preferences_url=f"{base}/p/{recipient.token}",
    )


def substitute(text: str, values: dict[str, str]) -> str:
    """What SendGrid does with a part: each token replaced by its value, as plain text."""
    for token, value in values.items():
        text = text.replace(token, value)
    return text
