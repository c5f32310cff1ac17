"""Scheduling: each segment's send at its time. The `scheduled_sends` rows are the one truth;
the daemon keeps APScheduler as its alarm clock, with jobs in memory set from those rows.
"""

from newsletter.schedule.daemon import Daemon, daemon_for
from newsletter.schedule.planning import (
    ScheduledSendInfo,
    cancel,
    list_schedule,
    move,
    schedule_edition,
)

__all__ = [
    "Daemon",
    "ScheduledSendInfo",
    "cancel",
    "daemon_for",
    "list_schedule",
    "move",
    "schedule_edition",
]
