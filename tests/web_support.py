"""Helpers for the member web tests: an app on a real database with members and a memory
transport that catches the confirmation emails."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from delivery_support import make_project, project_settings, seed_members
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery import MemoryTransport
from newsletter.web import create_app


@dataclass
class Web:
    client: TestClient
    settings: Settings
    db: Database
    mail: MemoryTransport
    members: list[str]
    build: Path

    def last_mail_link(self, kind: str) -> str:
        """The path of the link in the latest member email of `kind` (e.g. "c" or "e")."""
        body = self.mail.requests[-1].json()["content"][0]["value"]
        match = re.search(rf"https://news\.example\.org(/{kind}/[A-Za-z0-9._-]+)", body)
        assert match, body
        return match[1]


def make_web(tmp_path: Path, db: Database, db_url: str, **overrides: object) -> Web:
    build = make_project(tmp_path)
    settings = project_settings(tmp_path, db_url, **overrides)
    members = seed_members(db, {"wales": 3, "scotland": 2})
    mail = MemoryTransport()
    app = create_app(settings, db=db, transport=mail)
    return Web(TestClient(app, follow_redirects=False), settings, db, mail, members, build)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no form token in the page"
    return match[1]
