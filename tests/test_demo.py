"""`newsletter demo` on the sample project: build, import, send to the outbox, schedule, cancel."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from newsletter.regions import REGION_SLUGS, normalise_region
from newsletter.render import load_build


def _outbox_recipients(outbox: Path) -> Counter[tuple[str, str]]:
    seen: Counter[tuple[str, str]] = Counter()
    for request in outbox.glob("2026-12/*/*.json"):
        body = json.loads(request.read_text("utf-8"))
        for personalization in body["personalizations"]:
            for to in personalization["to"]:
                seen[(request.parent.name, to["email"])] += 1
    return seen


def test_demo_builds_imports_sends_and_schedules(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("demo")
    assert result.exit_code == 0, result.stderr

    out = project / "build" / "2026-12"
    build = load_build(out)  # refuses a build with a failed gate or a file not as recorded
    assert sorted(v.segment for v in build.variants) == sorted(REGION_SLUGS)
    for variant in build.variants:
        assert build.eml_path(variant.segment).is_file()
        assert variant.size <= 90_000, variant.segment  # headroom under Gmail's clip
        assert variant.segment in result.stdout

    assert "40 imported" in result.stdout

    # Every sample member got exactly one request entry, in their own region's variant.
    with (project / "subscribers" / "sample.csv").open(encoding="utf-8-sig") as fh:
        members = {row["Email"].strip().lower(): normalise_region(row["Region"]) for row in csv.DictReader(fh)}
    sent = _outbox_recipients(project / "build" / "demo" / "outbox")
    assert sorted(email for _, email in sent) == sorted(members)
    assert set(sent.values()) == {1}
    assert all(members[email] == segment for segment, email in sent)

    assert "scheduled 2026-12:scotland for " in result.stdout
    assert "cancelled all 12 again" in result.stdout
    # The demo never touches the project's own database.
    assert not (project / "newsletter.db").exists()


def test_demo_can_be_run_again(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    first = cli("demo")
    second = cli("demo")
    assert first.exit_code == second.exit_code == 0, second.stderr
    assert "40 imported" in second.stdout and "sent by this command: 40 recipients" in second.stdout
