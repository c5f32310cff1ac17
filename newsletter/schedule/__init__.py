"""Scheduling: each segment's send at its time. The `scheduled_sends` rows are the one truth;
the daemon uses APScheduler as its clock.
"""

from newsletter.schedule.daemon import context_for, run_daemon, run_once
from newsletter.schedule.planning import (
    ScheduledSendInfo,
    cancel,
    list_schedule,
    move,
    schedule_edition,
)

__all__ = [
    "ScheduledSendInfo",
    "cancel",
    "context_for",
    "list_schedule",
    "move",
    "run_daemon",
    "run_once",
    "schedule_edition",
]
