"""The one lease rule (newsletter.delivery.leases): whether the holder of a batch claim or of a
scheduled send is still alive. The batch sender and the scheduler daemon both decide with it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from newsletter.delivery import new_owner_id, owner_alive
from newsletter.delivery.leases import HOST, process_exited

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
FRESH = NOW - timedelta(seconds=5)
STALE = NOW - timedelta(seconds=61)


def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_owner_ids_name_this_host_and_process_and_are_unique() -> None:
    first, second = new_owner_id(), new_owner_id()
    assert first.startswith(f"{HOST}:{os.getpid()}:") and first != second


def test_a_holder_on_this_host_is_alive_while_its_process_runs_and_its_lease_is_fresh() -> None:
    me = new_owner_id()
    assert owner_alive(me, FRESH, LEASE, now=NOW)
    assert not owner_alive(me, STALE, LEASE, now=NOW)  # hung: alive, but not renewing


def test_a_holder_on_this_host_whose_process_exited_is_gone_at_once() -> None:
    assert not owner_alive(f"{HOST}:{exited_pid()}:abcd1234", FRESH, LEASE, now=NOW)


def test_a_holder_on_another_host_is_judged_by_its_lease_alone() -> None:
    assert owner_alive("elsewhere:1:abcd1234", FRESH, LEASE, now=NOW)
    assert owner_alive("elsewhere:1:abcd1234", NOW - LEASE, LEASE, now=NOW)  # the lease's last moment
    assert not owner_alive("elsewhere:1:abcd1234", STALE, LEASE, now=NOW)


def test_no_holder_or_no_lease_time_means_gone() -> None:
    assert not owner_alive(None, FRESH, LEASE, now=NOW)
    assert not owner_alive(new_owner_id(), None, LEASE, now=NOW)


def test_the_default_clock_is_the_real_time() -> None:
    me = new_owner_id()
    assert owner_alive(me, datetime.now(UTC), LEASE)
    assert not owner_alive(me, datetime.now(UTC) - 2 * LEASE, LEASE)


def test_only_an_exited_process_on_this_host_counts_as_exited() -> None:
    """The process test alone, as the outcome journal uses it (a local file has no lease)."""
    assert process_exited(f"{HOST}:{exited_pid()}:abcd1234")
    assert not process_exited(new_owner_id())
    assert not process_exited(f"elsewhere:{exited_pid()}:abcd1234")  # not ours to judge
