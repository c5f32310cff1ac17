"""Pull SendGrid's suppression lists and mark those members; never reactivates anyone.

    sync_suppressions(db, SendGridSuppressionClient(api_key, host))

Lists (GET, paged with limit/offset; see tsg_suppressions_v3.json) and the status they give:
spam reports → complained; global unsubscribes → unsubscribed; bounces, blocks, invalid emails →
bounced. Only *active* members change (the strongest reason is applied first), each change with an
audit row (actor "sendgrid-sync"). Addresses that match no member are counted, not stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sqlalchemy import func, select

from newsletter.db import Database
from newsletter.errors import TransportAuthError, TransportError
from newsletter.models import AuditEntry, Subscriber, SubscriberStatus

ACTOR = "sendgrid-sync"
PAGE_SIZE = 500
# (list name = path under /v3/suppression/, new status), strongest first
LISTS: tuple[tuple[str, SubscriberStatus], ...] = (
    ("spam_reports", SubscriberStatus.COMPLAINED),
    ("unsubscribes", SubscriberStatus.UNSUBSCRIBED),
    ("bounces", SubscriberStatus.BOUNCED),
    ("blocks", SubscriberStatus.BOUNCED),
    ("invalid_emails", SubscriberStatus.BOUNCED),
)



class SuppressionClient(Protocol):
    def page(self, name: str, limit: int, offset: int) -> list[dict[str, Any]]:
        """One page of /v3/suppression/<name>: a list of objects with an "email"."""
        ...


class SendGridSuppressionClient:
    """Reads the lists with the official client (`SendGridAPIClient(api_key, host=...)`)."""

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com") -> None:

        self._client = SendGridAPIClient(api_key, host=host).client

    def page(self, name: str, limit: int, offset: int) -> list[dict[str, Any]]:


        try:
            response = getattr(self._client.suppression, name).get(query_params={"limit": limit, "offset": offset})
        except HTTPError as exc:
            if exc.status_code in (401, 403):
                raise TransportAuthError(f"SendGrid refused the API key (HTTP {exc.status_code})",
                                         hint="the key needs the Suppressions read permission") from None
            raise TransportError(f"SendGrid /v3/suppression/{name}: HTTP {exc.status_code}") from None
        except OSError as exc:
            raise TransportError(f"SendGrid /v3/suppression/{name}: {exc.__class__.__name__}") from None
        data = json.loads(response.body or b"[]")
        return data if isinstance(data, list) else []


@dataclass
class SyncResult:
    seen: dict[str, int] = field(default_factory=dict)  # list -> addresses read
    marked: dict[str, int] = field(default_factory=dict)  # new status -> members changed
    unknown: int = 0  # addresses matching no member
    already_inactive: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "marked": self.marked, "unknown": self.unknown,
                "already_inactive": self.already_inactive}


def _pages(client: SuppressionClient, name: str) -> Iterator[list[dict[str, Any]]]:
    offset = 0
    while True:
        page = client.page(name, PAGE_SIZE, offset)
        if page:
            yield page
        if len(page) < PAGE_SIZE:
            return
        offset += len(page)


def sync_suppressions(db: Database, client: SuppressionClient) -> SyncResult:
    result = SyncResult(marked={status.value: 0 for _, status in LISTS})
    for name, status in LISTS:
        result.seen[name] = 0
        for page in _pages(client, name):
            keys = {str(item.get("email", "")).strip().lower() for item in page} - {""}
            result.seen[name] += len(keys)
            with db.write_session() as session:
                members = list(session.scalars(select(Subscriber).where(func.lower(Subscriber.email_key).in_(keys))))
                result.unknown += len(keys) - len({m.email_key.lower() for m in members if m.email_key})
                for member in members:
                    if member.status != SubscriberStatus.ACTIVE.value:
                        result.already_inactive += 1
                        continue
                    session.add(AuditEntry(subscriber_id=member.id, actor=ACTOR, action="status",
                                           old_status=member.status, new_status=status.value,
                                           reason=f"on SendGrid's {name} list"))
                    member.status = status.value
                    result.marked[status.value] += 1
    return result
