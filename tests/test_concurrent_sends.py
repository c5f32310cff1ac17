"""Several `newsletter send` started at once on a new edition share one build and send once.

Each process builds (or waits for, and reuses) build/2026-12 while the others read it: a build is
written beside the folder and swapped in whole, so no reader sees a file of one build with the
build.json of another ("changed after the build"), and every member gets the email exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from delivery_support import seed_members
from sqlalchemy import select

from newsletter.db import Database
from newsletter.models import Batch, BatchStatus
from newsletter.regions import REGION_SLUGS
from newsletter.render import load_build

pytestmark = pytest.mark.slow


def _send(project: Path, db_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NEWSLETTER_PROJECT_DIR": str(project), "NEWSLETTER_DATABASE_URL": db_url,
           "NEWSLETTER_BATCH_SIZE": "4", "NEWSLETTER_CONCURRENCY": "2",
           "NEWSLETTER_MAX_REQUESTS_PER_SECOND": "1000"}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", "issues/2026-12.yaml", "--transport", "outbox",
         "--outbox", "outbox", "--yes", "--json"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_three_first_sends_at_once_share_one_build_and_send_once(project: Path, db: Database, db_url: str) -> None:
    active = seed_members(db, {region: 9 for region in REGION_SLUGS})
    procs = [_send(project, db_url) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert "changed after the build" not in err and "internal error" not in err, err
        assert proc.returncode == 0 or (proc.returncode == 3 and "in progress elsewhere" in err), (out, err)

    # one build: every process used the same files (the others waited for the first and reused it)
    build = load_build(project / "build" / "2026-12")
    assert len(build.variants) == 12
    assert len(list((project / "build").glob(".2026-12.build-*"))) == 1

    seen: Counter[str] = Counter()
    for request in (project / "outbox" / "2026-12").glob("*/*.json"):
        body = json.loads(request.read_text("utf-8"))
        seen.update(to["email"] for p in body["personalizations"] for to in p["to"])
        variant = build.variant(request.parent.name)
        assert body["content"][1]["value"] == build.html(variant.segment)  # the built HTML, as hashed
    assert sorted(seen) == sorted(active) and set(seen.values()) == {1}
    with db.session() as session:
        batches = session.execute(select(Batch.status, Batch.attempts)).all()
    assert batches and all(status == BatchStatus.ACCEPTED.value and attempts == 1 for status, attempts in batches)
