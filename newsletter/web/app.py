"""The ASGI app behind `newsletter serve` (Starlette on uvicorn).

    uvicorn --factory newsletter.web:create_app      # what `newsletter serve` runs

Starlette rather than FastAPI: these are server-rendered pages and one webhook, so neither
request-model validation nor OpenAPI would be used, and every handler stays a plain function over
the same service calls the CLI makes (newsletter.members, newsletter.delivery).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from newsletter.config import Settings, load_settings
from newsletter.db import Database, open_database
from newsletter.delivery import MemberLinks, Transport, make_transport, signature_checker, token_keys
from newsletter.web import archive_pages, console, member_pages, signup_pages, webhook
from newsletter.web.pages import STATIC, WebState, render, template_environment
from newsletter.web.security import SecurityHeaders, install_log_redaction


async def home(request: Request) -> Response:
    return render(request, "home.html")


async def help_page(request: Request) -> Response:
    return render(request, "help.html")


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def archive_root(request: Request) -> Response:
    return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/archive/", status_code=308)


async def admin_root(request: Request) -> Response:
    return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/admin/", status_code=308)


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        return PlainTextResponse("method not allowed", status_code=405)
    return render(request, "not_found.html", status=404)


async def server_error(request: Request, exc: Exception) -> Response:
    return render(request, "try_later.html", status=500)


ROUTES = [
    Route("/", home),
    Route("/healthz", health),
    Route("/help", help_page),
    Route("/u/{token}", member_pages.unsubscribe_page, methods=["GET", "HEAD"]),
    Route("/u/{token}", member_pages.unsubscribe_post, methods=["POST"]),
    Route("/u/{token}/resubscribe", member_pages.resubscribe_post, methods=["POST"]),
    Route("/p/{token}", member_pages.preferences_page, methods=["GET", "HEAD"]),
    Route("/p/{token}", member_pages.preferences_post, methods=["POST"]),
    Route("/e/{token}", member_pages.erase_page, methods=["GET", "HEAD"]),
    Route("/e/{token}", member_pages.erase_post, methods=["POST"]),
    Route("/subscribe", signup_pages.subscribe_page, methods=["GET", "HEAD"]),
    Route("/subscribe", signup_pages.subscribe_post, methods=["POST"]),
    Route("/c/{token}", signup_pages.confirm_page, methods=["GET", "HEAD"]),
    Route("/c/{token}", signup_pages.confirm_post, methods=["POST"]),
    Route("/archive", archive_root),
    Route("/archive/", archive_pages.archive_index),
    Route("/archive/{edition}/{segment}", archive_pages.archive_variant),
    Route("/webhooks/sendgrid", webhook.sendgrid_events, methods=["POST"]),
    Route("/admin", admin_root),
    Mount("/admin", routes=console.ROUTES),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(settings: Settings | None = None, *, db: Database | None = None,
               transport: Transport | None = None) -> Starlette:
    """The app for these settings (default: the project's, as the CLI reads them). Refuses to
    start without a usable token secret (ConfigError)."""
    install_log_redaction()
    settings = settings or load_settings()
    db = db or open_database(settings.resolved_database_url)
    keys = token_keys(db, settings)
    key = settings.sendgrid_webhook_public_key
    web = WebState(
        settings=settings, db=db, links=MemberLinks(db, settings, keys),
        transport=transport or make_transport(settings), templates=template_environment(),
        webhook_checker=signature_checker(key) if key else None,
    )
    app = Starlette(routes=ROUTES, middleware=[Middleware(SecurityHeaders)],
                    exception_handlers={404: not_found, 405: not_found, 500: server_error})
    app.state.web = web
    return app
