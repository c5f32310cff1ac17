"""Sign-in, sign-out and the one-time set-password page of the console."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from newsletter.accounts import LoginRefused, authenticate, end_session, set_password, setup_user, start_session
from newsletter.errors import InputError
from newsletter.members import hit, limit_key
from newsletter.web.console.guard import (
    COOKIE,
    PRE_COOKIE,
    Ctx,
    back,
    clear_session_cookie,
    cookie_path,
    forbidden,
    page,
    page_html,
    read_form,
    root,
    set_session_cookie,
)
from newsletter.web.forms import field
from newsletter.web.pages import form_token, form_token_ok, state
from newsletter.web.security import cross_site

log = logging.getLogger("newsletter.web")
IP_LIMIT = 100  # sign-in attempts per address per window, whatever the account
IP_WINDOW = timedelta(minutes=15)


def _safe_next(request: Request, value: str) -> str:
    """Only a console path of ours (never another site, never `//host`)."""
    prefix = f"{root(request)}/admin/"
    if value.startswith(prefix) and not value.startswith("//") and "\\" not in value and "//" not in value[1:]:
        return value
    return f"{root(request)}/admin/"


def _login_page(request: Request, pre: str, *, error: str = "", email: str = "", status: int = 200) -> HTMLResponse:
    html = page_html(request, "admin/login.html", csrf=form_token(request, "login:" + pre), error=error, email=email,
                     next=_safe_next(request, request.query_params.get("next", "")))
    response = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
    response.set_cookie(PRE_COOKIE, pre, path=cookie_path(request), secure=True, httponly=True, samesite="strict")
    return response


async def login_page(request: Request) -> Response:
    pre = request.cookies.get(PRE_COOKIE, "")
    return _login_page(request, pre if 20 <= len(pre) <= 64 and pre.isascii() else secrets.token_urlsafe(24))


def _attempt(request: Request, email: str, password: str) -> str:
    web = state(request)
    with web.db.write_session() as session:
        client = request.client.host if request.client else "unknown"
        allowed = hit(session, limit_key(session, "console-login-ip", client), limit=IP_LIMIT, window=IP_WINDOW)
    if not allowed:
        raise LoginRefused("too many sign-in attempts from this address; wait a few minutes")
    user = authenticate(web.db, email, password)
    # A fresh session id at every sign-in: an id the browser had before (planted or not) is dropped.
    return start_session(web.db, user.id, replacing=request.cookies.get(COOKIE))


async def login_post(request: Request) -> Response:
    parsed = await read_form(request)
    if isinstance(parsed, Response):
        return parsed
    fields, _ = parsed
    pre = request.cookies.get(PRE_COOKIE, "")
    if cross_site(request) or not pre or not form_token_ok(request, "login:" + pre, field(fields, "csrf")):
        return forbidden(request, "The sign-in form was out of date or came from another site. Reload it and try again.")
    email = field(fields, "email")[:320]
    try:
        session_id = await run_in_threadpool(_attempt, request, email, field(fields, "password"))
    except LoginRefused as exc:
        log.info("console sign-in refused")  # never the address or password
        return _login_page(request, pre, error=exc.message, email=email, status=401)
    response = RedirectResponse(_safe_next(request, field(fields, "next")), status_code=303)
    set_session_cookie(response, request, session_id)
    response.delete_cookie(PRE_COOKIE, path=cookie_path(request), secure=True, httponly=True, samesite="strict")
    return response


@page()
def logout_post(request: Request, ctx: Ctx) -> Response:
    end_session(state(request).db, request.cookies.get(COOKIE))
    response = back(request, "/login")
    clear_session_cookie(response, request)
    return response


def _setup_page(request: Request, token: str, *, error: str = "", status: int = 200) -> HTMLResponse:
    web = state(request)
    user = setup_user(web.db, token)
    html = page_html(request, "admin/set_password.html", account=user, error=error, csrf=form_token(request, "setpw:" + token))
    return HTMLResponse(html, status_code=status if user else 404,
                        headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})


async def set_password_page(request: Request) -> Response:
    return await run_in_threadpool(_setup_page, request, str(request.path_params["token"]))


async def set_password_post(request: Request) -> Response:
    token = str(request.path_params["token"])
    parsed = await read_form(request)
    if isinstance(parsed, Response):
        return parsed
    fields, _ = parsed
    if cross_site(request) or not form_token_ok(request, "setpw:" + token, field(fields, "csrf")):
        return forbidden(request, "The form was out of date or came from another site. Reload it and try again.")
    password, again = field(fields, "password"), field(fields, "password_again")
    if password != again:
        return await run_in_threadpool(_setup_page, request, token, error="The two passwords differ.", status=400)
    try:
        await run_in_threadpool(set_password, state(request).db, token, password)
    except InputError as exc:
        return await run_in_threadpool(_setup_page, request, token, error=exc.message, status=400)
    return back(request, "/login", "Your password is set. Sign in with it.")
