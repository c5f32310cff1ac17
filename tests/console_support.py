"""Helpers for the console tests: the sample project on a real database, the app over https (the
session cookie is Secure), a comms user and an admin with passwords, and sign-in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from starlette.testclient import TestClient

from newsletter.accounts import add_user, set_password
from newsletter.config import Settings, load_settings
from newsletter.db import Database
from newsletter.delivery import MemoryTransport
from newsletter.members import import_sample
from newsletter.web import create_app

PASSWORD = "correct horse battery staple"
COMMS = "casey.comms@example.org"
ADMIN = "ada.admin@example.org"


def make_user(db: Database, email: str, role: str, password: str = PASSWORD) -> None:
    _, token = add_user(db, email, role, actor="test")
    set_password(db, token, password)


@dataclass
class Console:
    client: TestClient
    settings: Settings
    db: Database
    mail: MemoryTransport

    def login(self, email: str, password: str = PASSWORD) -> object:
        page = self.client.get("/admin/login")
        return self.client.post("/admin/login", data={"csrf": csrf_of(page.text), "email": email, "password": password,
                                                      "next": "/admin/"})

    def csrf(self, path: str = "/admin/") -> str:
        return csrf_of(self.client.get(path).text)


def make_console(project: Path, db: Database, db_url: str, **overrides: object) -> Console:
    settings = load_settings(project, database_url=db_url, **overrides)
    import_sample(db, project)
    make_user(db, COMMS, "comms")
    make_user(db, ADMIN, "admin")
    mail = MemoryTransport()
    app = create_app(settings, db=db, transport=mail)
    return Console(TestClient(app, base_url="https://testserver", follow_redirects=False), settings, db, mail)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no form token in the page"
    return match[1]
