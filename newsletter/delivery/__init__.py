"""Delivery: freeze an edition's audience, cut it into batches in the database, build one SendGrid
request per batch and hand it to a transport, exactly once.

    build ──► audience (frozen) ──► batches (claimed in the database) ──► transport
"""

from newsletter.delivery.audience import AudiencePlan, SegmentPlan
from newsletter.delivery.recovery import (
    AuditRow,
    BatchChange,
    BatchView,
    batch_audit,
    batch_of_recipient,
    get_batch,
    list_batches,
    mark_batch_delivered,
    requeue_batch,
)
from newsletter.delivery.send import (
    ProgressSink,
    RunReport,
    SendInterrupted,
    edition_started,
    list_runs,
    plan_send,
    run_report,
    send_edition,
    what_is_left,
)
from newsletter.delivery.tokens import (
    ERASE,
    PREFERENCES,
    SIGNUP,
    UNSUBSCRIBE,
    TokenKeys,
    make_token,
    move_stored_secret,
    new_secret,
    token_keys,
    token_secret,
    verify_token,
    write_secret_file,
)
from newsletter.delivery.transports import (
    ConnectionFailed,
    MailRequest,
    MemoryTransport,
    OutcomeUnknown,
    Transport,
    TransportResponse,
    make_transport,
)

__all__ = [
    "ERASE",
    "PREFERENCES",
    "SIGNUP",
    "UNSUBSCRIBE",
    "AudiencePlan",
    "AuditRow",
    "BatchChange",
    "BatchView",
    "ConnectionFailed",
    "MailRequest",
    "MemoryTransport",
    "OutcomeUnknown",
    "ProgressSink",
    "RunReport",
    "SegmentPlan",
    "SendInterrupted",
    "TokenKeys",
    "Transport",
    "TransportResponse",
    "batch_audit",
    "batch_of_recipient",
    "edition_started",
    "get_batch",
    "list_batches",
    "list_runs",
    "make_token",
    "make_transport",
    "plan_send",
    "mark_batch_delivered",
    "move_stored_secret",
    "new_secret",
    "requeue_batch",
    "run_report",
    "send_edition",
    "token_keys",
    "token_secret",
    "verify_token",
    "what_is_left",
    "write_secret_file",
]
