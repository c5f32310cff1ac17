"""Member requests that arrive with a link from an email: each checks the link's token, then calls
the member store (newsletter.members) in one transaction. The member web calls these; so can a
script or the CLI. A link that is malformed, forged, made for another purpose, expired, or names a
member who no longer exists (erased) raises LinkRefused, which says nothing more.

    /u/<token>   unsubscribe (GET: confirm page; POST: RFC 8058 one-click or the page's button)
    /p/<token>   preferences: name, region, pause, unsubscribe, my data, erase me
    /c/<token>   sign-up confirmation (48 hours)
    /e/<token>   erasure confirmation (24 hours)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.member_mail import (
    erasure_confirmation,
    send_member_message,
    signup_confirmation,
)
from newsletter.delivery.tokens import (
    ERASE,
    PREFERENCES,
    SIGNUP,
    UNSUBSCRIBE,
    TokenKeys,
    make_expiring_token,
    make_token,
)
from newsletter.delivery.transports import Transport
from newsletter.errors import NotFound
from newsletter.members import (
    MemberView,
    SignupConfirmed,
    SignupDecision,
    SignupForm,
    SubscriberDetails,
    change_details,
    confirm_signup,
    erase_member,
    member_by_id,
    member_data,
    member_view,
    pause_member,
    pending_signup,
    request_signup,
    resubscribe_member,
    resume_member,
    unsubscribe_member,
)
from newsletter.models import Subscriber, utcnow

ERASE_LINK_LIFETIME = timedelta(hours=24)
ONE_CLICK = "one-click"  # the audit actor of an RFC 8058 unsubscribe
WEB = "web"  # the audit actor of a member's own page


class LinkRefused(NotFound):
    """The link is not (or no longer) valid. Deliberately vague: it must reveal nothing."""

    def __init__(self) -> None:
        super().__init__("this link is not valid")


@dataclass(frozen=True)
class MemberLinks:
    """Everything a member request needs: the database, settings and the token secrets."""

    db: Database
    settings: Settings
    keys: TokenKeys

    def url(self, path: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/{path.lstrip('/')}"

    def token_for(self, subscriber_id: int, purpose: str) -> str:
        return make_token(self.keys.current, subscriber_id, purpose)

    def _id(self, token: str, purpose: str) -> int:
        found = self.keys.verify(token, purpose)
        if found is None:
            raise LinkRefused()
        return found

    def _member(self, session: Session, token: str, purpose: str) -> Subscriber:
        sub = member_by_id(session, self._id(token, purpose))
        if sub is None:
            raise LinkRefused()
        return sub

    # ---------------------------------------------------------------- reading

    def member(self, token: str, purpose: str) -> MemberView:
        """The member a link names (reading only: GET pages never change anything)."""
        with self.db.session() as session:
            return member_view(self._member(session, token, purpose))

    def preferences_token(self, token: str, purpose: str) -> str:
        """The preferences link's token for the member another valid link names."""
        return self.token_for(self.member(token, purpose).id, PREFERENCES)

    # ---------------------------------------------------------------- unsubscribe

    def unsubscribe(self, token: str, *, one_click: bool) -> bool:
        """Unsubscribe the member an unsubscribe (or preferences) link names, in one transaction.
        Idempotent: False when there was nothing to change."""
        purpose = UNSUBSCRIBE if one_click else None
        member_id = self._id(token, purpose) if purpose else self._either(token)
        actor, reason = ((ONE_CLICK, "one-click unsubscribe (RFC 8058 List-Unsubscribe-Post)") if one_click
                         else (WEB, "unsubscribed on the member web page"))
        with self.db.write_session() as session:
            sub = member_by_id(session, member_id)
            if sub is None:
                raise LinkRefused()
            return unsubscribe_member(session, sub, actor=actor, reason=reason)

    def _either(self, token: str) -> int:
        found = self.keys.verify(token, UNSUBSCRIBE)
        return found if found is not None else self._id(token, PREFERENCES)

    def resubscribe(self, token: str) -> bool:
        """Undo an unsubscribe from the page that confirmed it (fresh consent, the current wording)."""
        with self.db.write_session() as session:
            sub = member_by_id(session, self._either(token))
            if sub is None:
                raise LinkRefused()
            return resubscribe_member(session, sub, actor=WEB, reason="resubscribed on the member web page",
                                      consent_source="member web: resubscribed after unsubscribing",
                                      consent_version=self.settings.consent_version)

    # ---------------------------------------------------------------- preferences

    def change(self, token: str, *, first_name: str | None, last_name: str | None, region: str | None) -> dict[str, Any]:
        with self.db.write_session() as session:
            sub = self._member(session, token, PREFERENCES)
            return change_details(session, sub, SubscriberDetails(first_name=first_name, last_name=last_name,
                                                                  region=region), actor=WEB)

    def pause(self, token: str, months: int) -> datetime:
        with self.db.write_session() as session:
            return pause_member(session, self._member(session, token, PREFERENCES), months, actor=WEB)

    def resume(self, token: str) -> bool:
        with self.db.write_session() as session:
            return resume_member(session, self._member(session, token, PREFERENCES), actor=WEB)

    def my_data(self, token: str) -> dict[str, Any]:
        """The subject-access JSON, as `subscribers access` prints it."""
        with self.db.session() as session:
            return member_data(session, self._member(session, token, PREFERENCES))

    # ---------------------------------------------------------------- erasure

    def request_erasure(self, token: str, transport: Transport) -> None:
        """Email the member a link that confirms the erasure (a forwarded preferences link alone
        cannot erase anyone)."""
        member = self.member(token, PREFERENCES)
        link = self.url("e/" + make_expiring_token(self.keys.current, member.id, ERASE, utcnow() + ERASE_LINK_LIFETIME))
        message = erasure_confirmation(self.settings, member.email, member.first_name, link)
        send_member_message(transport, self.settings, message, member.id)

    def erasure_pending(self, token: str) -> MemberView:
        """The member an erasure link names, while the link is valid (reading only)."""
        with self.db.session() as session:
            sub = member_by_id(session, self._expiring(token, ERASE))
            if sub is None:
                raise LinkRefused()
            return member_view(sub)

    def erase(self, token: str) -> None:
        """The same erasure as `subscribers erase`."""
        with self.db.write_session() as session:
            sub = member_by_id(session, self._expiring(token, ERASE))
            if sub is None:
                raise LinkRefused()
            erase_member(session, sub, actor=WEB, reason="erasure requested by the member (confirmed by email)")

    def _expiring(self, token: str, purpose: str) -> int:
        found = self.keys.verify_expiring(token, purpose)
        if found is None:
            raise LinkRefused()
        return found

    # ---------------------------------------------------------------- sign-up

    def sign_up(self, form: SignupForm, client: str, transport: Transport) -> SignupDecision:
        """Record a sign-up and email its confirmation link (unless held back: honeypot, rate
        limit). InputError for what the person must fix; MemberMailFailed when the email could
        not be sent."""
        with self.db.write_session() as session:
            decision = request_signup(session, form, client=client, consent_version=self.settings.consent_version)
        if decision.signup_id is not None:
            link = self.url("c/" + make_expiring_token(self.keys.current, decision.signup_id, SIGNUP,
                                                       decision.expires_at))
            message = signup_confirmation(self.settings, decision.email, form.first_name, link)
            send_member_message(transport, self.settings, message, decision.signup_id)
        return decision

    def signup_pending(self, token: str) -> str:
        """The address a sign-up link would confirm, while it is valid (reading only)."""
        with self.db.session() as session:
            request = pending_signup(session, self._expiring(token, SIGNUP))
            if request is None:
                raise LinkRefused()
            return request.email

    def confirm_signup(self, token: str) -> SignupConfirmed:
        with self.db.write_session() as session:
            confirmed = confirm_signup(session, self._expiring(token, SIGNUP), actor=WEB)
        if confirmed is None:
            raise LinkRefused()
        return confirmed
