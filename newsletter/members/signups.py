"""Sign-up with double opt-in: a request is kept (48 hours at most) until the link in the
confirmation email is used; only then does the address become an active subscriber, with its
proof of consent (when, where, which wording).

The answer to a request never depends on whether the address is known: a member already active,
unsubscribed, bounced or erased gets the same confirmation email as a stranger, and the form the
same page. Confirming is the one way an erased address may come back (its tombstone is removed:
fresh, proven consent outweighs the old suppression).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.errors import InputError
from newsletter.members.rate_limits import hit, limit_key
from newsletter.members.subscribers import (
    SubscriberDetails,
    audit,
    clean_value,
    normalise_email,
    set_status,
    tombstone_hash,
    tombstone_salt,
)
from newsletter.models import (
    ErasureTombstone,
    SignupRequest,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

SIGNUP_LIFETIME = timedelta(hours=48)
LIMIT_PER_CLIENT = (10, timedelta(hours=1))  # sign-up requests from one IP address
LIMIT_PER_ADDRESS = (3, timedelta(days=1))  # confirmation emails to one address
CONSENT_SOURCE = "web sign-up form (double opt-in)"


@dataclass(frozen=True)
class SignupForm:
    email: str
    first_name: str | None = None
    last_name: str | None = None
    region: str | None = None
    consent: bool = False
    trap: str = ""  # the honeypot field: people leave it empty, form-filling robots do not


@dataclass(frozen=True)
class SignupDecision:
    """What to do after a request: send a confirmation (signup_id set) or nothing. The person
    sees the same page either way."""

    email: str
    signup_id: int | None
    expires_at: datetime
    held_back: str | None = None  # why no email goes out (for logs and tests, never shown)


@dataclass(frozen=True)
class SignupConfirmed:
    subscriber_id: int
    outcome: str  # "created", "reactivated", "renewed" (already active), "returned after erasure"


def request_signup(session: Session, form: SignupForm, *, client: str, consent_version: str,
                   now: datetime | None = None) -> SignupDecision:
    """Record a sign-up request. InputError (naming the field) for what the person must fix;
    otherwise a decision, the same whatever the database knows about the address."""
    moment = now or utcnow()
    expires = moment + SIGNUP_LIFETIME
    if form.trap.strip():
        return SignupDecision(form.email.strip(), None, expires, "honeypot field filled")
    if not hit(session, limit_key(session, "signup-client", client), limit=LIMIT_PER_CLIENT[0],
               window=LIMIT_PER_CLIENT[1], now=moment):
        return SignupDecision(form.email.strip(), None, expires, "too many requests from this client")
    address = normalise_email(form.email)
    details = SubscriberDetails(first_name=form.first_name, last_name=form.last_name, region=form.region).checked()
    if not details.region:
        raise InputError("choose your region")
    if not form.consent:
        raise InputError("tick the box to agree to receive the digest")
    if not hit(session, limit_key(session, "signup-address", address.key), limit=LIMIT_PER_ADDRESS[0],
               window=LIMIT_PER_ADDRESS[1], now=moment):
        return SignupDecision(address.email, None, expires, "too many requests for this address")
    session.execute(delete(SignupRequest).where(SignupRequest.expires_at <= moment))
    request = SignupRequest(email=address.email, email_key=address.key, first_name=details.first_name,
                            last_name=details.last_name, region=details.region,
                            consent_version=clean_value(consent_version) or "unversioned",
                            requested_at=moment, expires_at=expires)
    session.add(request)
    session.flush()
    return SignupDecision(address.email, request.id, expires)


def pending_signup(session: Session, signup_id: int, now: datetime | None = None) -> SignupRequest | None:
    """The request a confirmation link names, while it waits and has not expired."""
    request = session.get(SignupRequest, signup_id)
    if request is None or request.expires_at <= (now or utcnow()):
        return None
    return request


def confirm_signup(session: Session, signup_id: int, *, actor: str = "web",
                   now: datetime | None = None) -> SignupConfirmed | None:
    """Make the address an active subscriber with proof of consent; None when the link's request
    is gone (used already, or expired)."""
    moment = now or utcnow()
    request = pending_signup(session, signup_id, moment)
    if request is None:
        return None
    proof = (f"confirmed sign-up: requested {request.requested_at.isoformat(timespec='seconds')}, "
             f"confirmed {moment.isoformat(timespec='seconds')}, consent wording {request.consent_version}")
    details = SubscriberDetails(first_name=request.first_name, last_name=request.last_name, region=request.region)
    sub = session.scalar(select(Subscriber).where(Subscriber.email_key == request.email_key))
    if sub is None:
        tombstone = session.get(ErasureTombstone, tombstone_hash(tombstone_salt(session), request.email_key))
        outcome = "returned after erasure" if tombstone is not None else "created"
        if tombstone is not None:
            session.delete(tombstone)
        sub = Subscriber(email=request.email, email_key=request.email_key, first_name=details.first_name,
                         last_name=details.last_name, region=details.region, attributes={},
                         status=SubscriberStatus.ACTIVE, joined_at=moment)
        session.add(sub)
        session.flush()
        audit(session, sub.id, actor, "create", new=SubscriberStatus.ACTIVE, reason=proof)
    else:
        for name, value in details.changes(sub).items():
            setattr(sub, name, value)
        if sub.status == SubscriberStatus.ACTIVE:
            outcome = "renewed"
            audit(session, sub.id, actor, "consent", reason=proof)
        else:
            outcome = "reactivated"
            set_status(session, sub, SubscriberStatus.ACTIVE, actor=actor, reason=proof)
        sub.paused_until = None
    sub.consent_source = CONSENT_SOURCE
    sub.consent_at = moment
    sub.consent_version = request.consent_version
    session.execute(delete(SignupRequest).where(SignupRequest.email_key == request.email_key))
    return SignupConfirmed(sub.id, outcome)
