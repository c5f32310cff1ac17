"""Who may do what in the console, and the checks every console request passes.

- The session cookie (`nl_console`): a random id; `Secure`, `HttpOnly`, `SameSite=Strict`, scoped
  to `<root>/admin`. The session lives in the database (newsletter.accounts).
- Every POST carries a form token (the member web's HMAC form tokens, bound here to the session)
  and is refused with 403 before anything changes when the token is missing or wrong, or when
  another site's page made the request.
- Roles: comms pages need any signed-in user; admin pages (members, segments, users) answer 403
  to comms users.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from newsletter.accounts import SESSION_LIFETIME, SignedIn, session_user
from newsletter.errors import InputError, NewsletterError, NotFound
from newsletter.web.forms import FORM_LIMIT, BodyTooLarge, form_fields, read_body
from newsletter.web.forms import field as first_value
from newsletter.web.pages import form_token, form_token_ok, state
from newsletter.web.security import PAGE_CSP, cross_site

COOKIE = "nl_console"
PRE_COOKIE = "nl_console_pre"  # binds the sign-in form's token to this browser before a session exists
UPLOAD_LIMIT = 50 * 1024 * 1024
# The member pages' policy, plus fetch() to our own origin (the live segment count, the progress bar).
CONSOLE_CSP = PAGE_CSP + "; connect-src 'self'"
HEADERS = {"cache-control": "no-store", "content-security-policy": CONSOLE_CSP}


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass
class Ctx:
    """One console request: who, and (for a POST) its fields and files."""

    user: SignedIn
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return first_value(self.fields, name)

    def all(self, name: str) -> list[str]:
        return [v for v in self.fields.get(name, []) if v.strip()]


def root(request: Request) -> str:
    """The app's path prefix (--root-path), without the /admin mount Starlette adds to root_path."""
    return str(request.scope.get("app_root_path", request.scope.get("root_path", ""))).rstrip("/")


def cookie_path(request: Request) -> str:
    return f"{root(request)}/admin"


def set_session_cookie(response: Response, request: Request, session_id: str) -> None:
    response.set_cookie(COOKIE, session_id, max_age=int(SESSION_LIFETIME.total_seconds()), path=cookie_path(request),
                        secure=True, httponly=True, samesite="strict")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=cookie_path(request), secure=True, httponly=True, samesite="strict")


def csrf_for(request: Request, user: SignedIn) -> str:
    return form_token(request, "console:" + user.session_hash)


def page_html(request: Request, template: str, *, user: SignedIn | None = None, csrf: str = "", **context: Any) -> str:
    """A console template with what every page needs (no user on the sign-in pages)."""
    web = state(request)
    notice = request.query_params.get("notice", "")
    if notice and not form_token_ok(request, "notice:" + notice, request.query_params.get("ns", "")):
        notice = ""  # only notices our own redirects wrote (a crafted link cannot put words on the page)
    return web.templates.get_template(template).render(
        root=root(request), org=web.settings.organisation, user=user, csrf=csrf, notice=notice[:300],
        path=request.url.path, **context)


def forbidden(request: Request, message: str, status: int = 403, user: SignedIn | None = None) -> HTMLResponse:
    title = {403: "Not allowed", 404: "Not found", 400: "Cannot do that"}.get(status, "Something went wrong")
    csrf = csrf_for(request, user) if user is not None else ""
    return HTMLResponse(page_html(request, "admin/forbidden.html", user=user, csrf=csrf, message=message, title=title),
                        status_code=status, headers=HEADERS)


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, list[str]], dict[str, Upload]]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, list[str]] = {}
    files: dict[str, Upload] = {}
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        if filename is not None:
            files[name] = Upload(str(filename), payload)
            continue
        try:
            fields.setdefault(name, []).append(payload.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return fields, files


async def read_form(request: Request, limit: int = FORM_LIMIT) -> tuple[dict[str, list[str]], dict[str, Upload]] | Response:
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return PlainTextResponse("request body too large; nothing was changed", status_code=413)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return _multipart(content_type, body)
    return form_fields(content_type, body), {}


Handler = Callable[[Request, Ctx], Response]


def page(role: str = "comms", *, upload: bool = False) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a console handler (a plain function, run in the thread pool): signed-in user with
    `role` (admin pages refuse comms users with 403), and for a POST the form with a valid token."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            web = state(request)
            user = await run_in_threadpool(session_user, web.db, request.cookies.get(COOKIE))
            if user is None:
                if request.method in ("GET", "HEAD"):
                    target = request.url.path
                    if request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(f"{root(request)}/admin/login?next={quote(target)}", status_code=303)
                return forbidden(request, "You are not signed in (or your session ended); nothing was changed.")
            if role == "admin" and not user.is_admin:
                return forbidden(request, "This page is for admins. Your account has the comms role.", user=user)
            ctx = Ctx(user)
            if request.method == "POST":
                parsed = await read_form(request, UPLOAD_LIMIT if upload else FORM_LIMIT)
                if isinstance(parsed, Response):
                    return parsed
                ctx.fields, ctx.files = parsed
                if cross_site(request) or not form_token_ok(request, "console:" + user.session_hash,
                                                            first_value(ctx.fields, "csrf")):
                    return forbidden(request, "The form token is missing or out of date (or the form came from "
                                              "another site); nothing was changed. Reload the page and try again.")
            try:
                return await run_in_threadpool(handler, request, ctx)
            except NotFound as exc:
                return forbidden(request, exc.message, 404, user)
            except InputError as exc:
                return forbidden(request, exc.explained, 400, user)
            except NewsletterError as exc:
                return forbidden(request, exc.explained, 500, user)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return wrap


def render(request: Request, ctx: Ctx, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A console page: the template gets the user, the form token and the root path."""
    return HTMLResponse(page_html(request, template, user=ctx.user, csrf=csrf_for(request, ctx.user), **context),
                        status_code=status, headers=HEADERS)


def back(request: Request, path: str, notice: str = "") -> RedirectResponse:
    """303 to a console path (always our own: never a URL taken from the request)."""
    target = f"{root(request)}/admin{path}"
    if notice:
        notice = notice[:300]
        target += (("&" if "?" in target else "?") + "notice=" + quote(notice)
                   + "&ns=" + quote(form_token(request, "notice:" + notice)))
    return RedirectResponse(target, status_code=303)
