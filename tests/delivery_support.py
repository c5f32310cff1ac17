"""Helpers for the delivery tests: a tiny build directory, segments and members."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from newsletter.config import Settings, load_settings
from newsletter.db import Database
from newsletter.models import Subscriber
from newsletter.render import BUILD_JSON, BuildRecord, GateReport, VariantRecord

SEGMENTS_YAML = """\
priority: [scotland, wales, london]
segments:
  scotland:
    rule: {region: scotland}
  wales:
    rule: {region: wales}
  london:
    rule: {region: london}
"""

HTML = """<!doctype html><html><body><p>Dear -first_name-,</p><p>{segment} news for -email-.</p>
<p><a href="-unsubscribe_url-">Unsubscribe</a> · <a href="-preferences_url-">Preferences</a></p></body></html>"""
TEXT = "Dear -first_name-,\n{segment} news for -email-.\nUnsubscribe: -unsubscribe_url-\nPreferences: -preferences_url-\n"


def make_project(root: Path, segments: tuple[str, ...] = ("scotland", "wales", "london"), edition: str = "2026-12") -> Path:
    """A project dir with subscribers/segments.yaml and build/<edition>/ (build.json + html/txt)."""
    (root / "subscribers").mkdir(parents=True, exist_ok=True)
    (root / "subscribers" / "segments.yaml").write_text(SEGMENTS_YAML, "utf-8")
    build = root / "build" / edition
    build.mkdir(parents=True, exist_ok=True)
    variants = []
    for seg in segments:
        html, text = HTML.format(segment=seg).encode(), TEXT.format(segment=seg).encode()
        (build / f"{seg}.html").write_bytes(html)
        (build / f"{seg}.txt").write_bytes(text)
        variants.append(VariantRecord(
            segment=seg, subject=f"Digest {edition} ({seg})", preheader="p", from_name="LPS Digest",
            from_email="digest@example.org", html_file=f"{seg}.html", text_file=f"{seg}.txt", eml_file=f"{seg}.eml",
            sha256=hashlib.sha256(html).hexdigest(), text_sha256=hashlib.sha256(text).hexdigest(),
            size=len(html), articles=(), send_at=None, zone="Europe/London", gates=GateReport(),
        ))
    record = BuildRecord(edition=edition, title="Digest", template="digest", template_sha256="0" * 64,
                         inputs_sha256="0" * 64, variants=tuple(variants))
    (build / BUILD_JSON).write_text(record.to_json(), "utf-8")
    return build


def project_settings(root: Path, db_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(database_url=db_url, retry_backoff_seconds=0.01, retry_backoff_max_seconds=0.05,
                                max_requests_per_second=1000.0, public_base_url="https://news.example.org")
    base.update(overrides)
    return load_settings(root, **base)


def seed_members(db: Database, per_region: dict[str, int], statuses: dict[str, int] | None = None) -> list[str]:
    """Active members per region (plus, in the first region, members in other statuses); returns
    the active members' addresses."""
    rows, active = [], []
    n = 0
    for region, count in per_region.items():
        for _ in range(count):
            n += 1
            email = f"member{n}@example.org"
            rows.append({"email": email, "email_key": email, "first_name": f"First{n}" if n % 5 else None,
                         "last_name": "Smith, Jr" if n % 7 == 0 else f"Last{n}", "region": region, "status": "active"})
            active.append(email)
    first = next(iter(per_region))
    for status, count in (statuses or {}).items():
        for _ in range(count):
            n += 1
            email = f"member{n}@example.org"
            rows.append({"email": email, "email_key": email, "first_name": "X", "region": first, "status": status})
    if rows:
        with db.session() as session:
            session.execute(insert(Subscriber), rows)
    return active
