"""Leases: who holds a piece of work, and whether that holder is still alive.

One rule for every holder: the batch sender's in-flight claims and the scheduler daemon's sends.
An owner id is `host:pid:nonce` (the nonce tells apart two holders in one process). A holder is
alive while

- its lease is fresh: the time it claimed or last renewed the work is at most `lease` ago, and
- when it runs on this host, its process still exists.

The process check notices a `kill -9` at once; the lease age is all another host can go by, and
it also catches a holder that hangs or a process id that was reused.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from newsletter.models import utcnow

HOST = socket.gethostname()


def new_owner_id() -> str:
    """A fresh owner id for this process: `host:pid:nonce`."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(
    owner: str | None, renewed_at: datetime | None, lease: timedelta, *, now: datetime | None = None
) -> bool:
    """True while `owner`, which claimed or renewed its work at `renewed_at`, may still be at it."""
    if not owner or renewed_at is None:
        return False
    if (now or utcnow()) - renewed_at > lease:
        return False
    return not process_exited(owner)


def process_exited(owner: str) -> bool:
    """True when `owner` ran on this host and its process no longer exists. False while it runs,
    and for another host (or an id without a pid): from here only its lease can tell."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, but someone else's
        return False
    return False
