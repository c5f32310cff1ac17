"""Scheduling: each segment's send at its time. The `scheduled_sends` rows are the one truth;
the daemon keeps APScheduler as its alarm clock, with jobs in memory set from those rows.
"""

from newsletter.schedule.daemon import Daemon, Delivered, RunSummary, daemon_for
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
    "Risk",
    "RunSummary",
    "ScheduledSendInfo",
    "cancel",
    "daemon_for",
    "list_schedule",
    "move",
    "move_sends",
    "release_for_direct_send",
    "schedule_edition",
    "scheduled_times",
]
