"""Sign-up with double opt-in: /subscribe (the form) and /c/<token> (the confirmation link).
The answer never depends on whether the address is known."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from newsletter.delivery import PREFERENCES, LinkRefused, MemberMailFailed
from newsletter.errors import InputError
from newsletter.members import SignupForm
from newsletter.web.forms import FORM_LIMIT, BodyTooLarge, field, form_fields, read_body
from newsletter.web.pages import form_token, form_token_ok, refusal, render, state
from newsletter.web.security import cross_site

SUBJECT = "subscribe"


def _form_page(request: Request, status: int = 200, error: str | None = None,
               values: dict[str, str] | None = None) -> Response:
    settings = state(request).settings
    return render(request, "subscribe.html", status=status, error=error, values=values or {},
                  consent_text=settings.consent_text, consent_version=settings.consent_version,
                  csrf=form_token(request, SUBJECT))


async def subscribe_page(request: Request) -> Response:
    if request.query_params.get("sent"):
        return render(request, "subscribe_sent.html")
    return _form_page(request)


async def subscribe_post(request: Request) -> Response:
    try:
        body = await read_body(request, FORM_LIMIT)
    except BodyTooLarge:
        return PlainTextResponse("request body too large", status_code=413)
    fields = form_fields(request.headers.get("content-type", ""), body)
    if cross_site(request) or not form_token_ok(request, SUBJECT, field(fields, "csrf")):
        return render(request, "expired_form.html", status=403)
    values = {name: field(fields, name) for name in ("email", "first_name", "last_name", "region")}
    form = SignupForm(values["email"], values["first_name"], values["last_name"], values["region"],
                      consent=field(fields, "consent") == "yes", trap=field(fields, "website"))
    web = state(request)
    client = request.client.host if request.client else "unknown"
    try:
        await run_in_threadpool(web.links.sign_up, form, client, web.transport)
    except InputError as exc:
        return _form_page(request, 400, exc.message, values)
    except MemberMailFailed:
        return render(request, "try_later.html", status=503)
    return RedirectResponse(f"{request.url.path}?sent=1", status_code=303)


async def confirm_page(request: Request) -> Response:
    token = str(request.path_params["token"])
    try:
        email = await run_in_threadpool(state(request).links.signup_pending, token)
    except LinkRefused:
        return refusal(request)
    return render(request, "confirm.html", email=email, csrf=form_token(request, "c:" + token))


async def confirm_post(request: Request) -> Response:
    token = str(request.path_params["token"])
    try:
        body = await read_body(request, FORM_LIMIT)
    except BodyTooLarge:
        return PlainTextResponse("request body too large", status_code=413)
    fields = form_fields(request.headers.get("content-type", ""), body)
    if cross_site(request) or not form_token_ok(request, "c:" + token, field(fields, "csrf")):
        return render(request, "expired_form.html", status=403)
    links = state(request).links
    try:
        confirmed = await run_in_threadpool(links.confirm_signup, token)
    except LinkRefused:
        return refusal(request)
    return render(request, "subscribed.html", preferences=links.token_for(confirmed.subscriber_id, PREFERENCES))
