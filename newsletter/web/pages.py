"""The app's shared state and page rendering (Jinja2, autoescaped, templates in web/templates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery import MemberLinks, Transport, make_form_token, verify_form_token
from newsletter.models import utcnow
from newsletter.regions import REGIONS, region_name

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


@dataclass
class WebState:
    settings: Settings
    db: Database
    links: MemberLinks
    transport: Transport
    templates: jinja2.Environment
    webhook_checker: EventWebhook | None


def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["region_name"] = lambda slug: region_name(slug) if slug else "no region"
    env.filters["day"] = lambda moment: f"{moment:%-d %B %Y}" if isinstance(moment, datetime) else ""
    return env


def state(request: Request) -> WebState:
    return request.app.state.web  # type: ignore[no-any-return]


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    web = state(request)
    settings = web.settings
    page = web.templates.get_template(template).render(
        root=request.scope.get("root_path", "").rstrip("/"), org=settings.organisation,
        postal_address=settings.postal_address, website=settings.website, regions=REGIONS, **context)
    return HTMLResponse(page, status_code=status)


def refusal(request: Request, status: int = 404) -> HTMLResponse:
    """The one page for a link that does not work: it says nothing about why."""
    return render(request, "refused.html", status=status)


def form_token(request: Request, subject: str) -> str:
    return make_form_token(state(request).links.keys.current, subject, utcnow())


def form_token_ok(request: Request, subject: str, value: str) -> bool:
    return verify_form_token(state(request).links.keys.current, value, subject, utcnow())
