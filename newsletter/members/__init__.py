"""Members: the subscriber store (admin actions with an audit trail), spreadsheet imports and
exports, segments (rules compiled to SQL), GDPR requests and provider suppressions.

The store does not send: delivery reads who is eligible from here.
"""

from newsletter.members.coverage import Coverage, SegmentCoverage, coverage, edition_order
from newsletter.members.imports import Change, ImportResult, Reject, import_file, import_sample
from newsletter.members.privacy import access, erase
from newsletter.members.provenance import FieldChange
from newsletter.members.segments import (
    SegmentSet,
    audience_clause,
    check_segments,
    count_members,
    default_path,
    defined_segments,
    eligible,
    load_segments,
    segment_counts,
    segment_members,
)
from newsletter.members.subscribers import (
    InvalidEmail,
    SubscriberDetails,
    SubscriberPage,
    add_subscriber,
    audit,
    change_email,
    display_text,
    find_subscriber,
    iter_export,
    normalise_email,
    open_output,
    resubscribe,
    search_subscribers,
    set_status,
    subscriber_record,
    unsubscribe,
    update_subscriber,
    write_csv,
    write_json,
)
from newsletter.members.suppressions import (
    SendGridSuppressionClient,
    SuppressionClient,
    SyncResult,
    sync_suppressions,
)

__all__ = [
    "Coverage",
    "SegmentCoverage",
    "coverage",
    "edition_order",
    "eligible",
    "Change",
    "FieldChange",
    "ImportResult",
    "InvalidEmail",
    "Reject",
    "SegmentSet",
    "SendGridSuppressionClient",
    "SubscriberDetails",
    "SubscriberPage",
    "SuppressionClient",
    "SyncResult",
    "access",
    "add_subscriber",
    "audience_clause",
    "audit",
    "change_email",
    "check_segments",
    "count_members",
    "default_path",
    "defined_segments",
    "display_text",
    "erase",
    "find_subscriber",
    "import_file",
    "import_sample",
    "iter_export",
    "load_segments",
    "normalise_email",
    "open_output",
    "resubscribe",
    "search_subscribers",
    "segment_counts",
    "segment_members",
    "set_status",
    "subscriber_record",
    "sync_suppressions",
    "unsubscribe",
    "update_subscriber",
    "write_csv",
    "write_json",
]
