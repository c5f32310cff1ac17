"""Scheduling: each segment's send at its time. The `scheduled_sends` rows are the one truth;
the daemon keeps APScheduler as its alarm clock, with jobs in memory set from those rows.
"""

from newsletter.schedule.daemon import Daemon, Delivered, RunSummary, daemon_for
from newsletter.schedule.digests import (
    DigestInfo,
    DryRun,
    OccurrenceInfo,
    Occurrences,
    approve_occurrence,
    digest_detail,
    dry_run_digest,
    list_digests,
    list_occurrences,
    occurrence,
    preview_url,
    run_digest_now,
    skip_occurrence,
)
from newsletter.schedule.editions import (
    EditionSummary,
    SegmentState,
    edition_summaries,
    edition_summary,
    proof_build,
)
from newsletter.schedule.planning import (
    ScheduledSendInfo,
    cancel,
    list_schedule,
    move,
    move_sends,
    release_for_direct_send,
    schedule_edition,
    scheduled_times,
)
from newsletter.schedule.risk import CHECKPOINTS, Risk

__all__ = [
    "CHECKPOINTS",
    "Daemon",
    "Delivered",
    "DigestInfo",
    "DryRun",
    "OccurrenceInfo",
    "Occurrences",
    "Risk",
    "RunSummary",
    "EditionSummary",
    "SegmentState",
    "edition_summaries",
    "edition_summary",
    "proof_build",
    "ScheduledSendInfo",
    "approve_occurrence",
    "cancel",
    "daemon_for",
    "digest_detail",
    "dry_run_digest",
    "list_digests",
    "list_occurrences",
    "list_schedule",
    "move",
    "move_sends",
    "occurrence",
    "preview_url",
    "release_for_direct_send",
    "run_digest_now",
    "schedule_edition",
    "scheduled_times",
    "skip_occurrence",
]
