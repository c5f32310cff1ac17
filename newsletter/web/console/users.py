"""Console (admins): users (add with a one-time set-password link, disable) and the console audit log."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from newsletter.accounts import ROLES, add_user, disable_user, list_audit, list_users, new_setup_link
from newsletter.errors import NewsletterError
from newsletter.models import utcnow
from newsletter.web.console.guard import Ctx, page, render, root
from newsletter.web.pages import state


def _page(request: Request, ctx: Ctx, *, link: str = "", error: str = "", status: int = 200) -> Response:
    web = state(request)
    return render(request, ctx, "admin/users.html", status=status, users=list_users(web.db), roles=ROLES, link=link,
                  error=error, now=utcnow())


def _link(request: Request, token: str) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{root(request)}/admin/set-password/{token}"


@page("admin")
def users_page(request: Request, ctx: Ctx) -> Response:
    return _page(request, ctx)


@page("admin")
def users_post(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    action = ctx.get("action")
    try:
        if action == "add":
            _, token = add_user(web.db, ctx.get("email"), ctx.get("role"), actor=ctx.user.actor)
            return _page(request, ctx, link=_link(request, token))
        if action == "reset":
            return _page(request, ctx, link=_link(request, new_setup_link(web.db, ctx.get("email"), actor=ctx.user.actor)))
        if action == "disable":
            if ctx.get("email").strip().lower() == ctx.user.email:
                return _page(request, ctx, error="You cannot disable your own account.", status=400)
            disable_user(web.db, ctx.get("email"), actor=ctx.user.actor)
            return _page(request, ctx)
    except NewsletterError as exc:
        return _page(request, ctx, error=exc.message, status=400)
    return _page(request, ctx, error="Unknown action; nothing was changed.", status=400)


@page("admin")
def audit_page(request: Request, ctx: Ctx) -> Response:
    return render(request, ctx, "admin/audit.html", entries=list_audit(state(request).db, limit=500))
