"""Pages a member reaches from a link in an email: unsubscribe (/u), preferences (/p), erasure
confirmation (/e). Handlers parse, call newsletter.delivery.MemberLinks, render. GET never changes
anything (mail scanners open links); every change is a POST."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from newsletter.delivery import PREFERENCES, UNSUBSCRIBE, LinkRefused, MemberMailFailed
from newsletter.errors import InputError
from newsletter.web.forms import FORM_LIMIT, BodyTooLarge, field, form_fields, is_one_click, read_body
from newsletter.web.pages import form_token, form_token_ok, refusal, render, state
from newsletter.web.security import cross_site

ONE_CLICK_LIMIT = 4096
NOTICES = {
    "details": "Your details were saved.",
    "paused": "The digest is paused.",
    "resumed": "The digest will come again from the next edition.",
    "unsubscribed": "You are unsubscribed. No more editions will be sent to you.",
    "resubscribed": "You are subscribed again.",
    "erase-sent": "We sent you an email with a link to confirm the erasure. It works for 24 hours.",
}


def _token(request: Request) -> str:
    return str(request.path_params["token"])


async def _form(request: Request, subject: str) -> dict[str, list[str]] | Response:
    """The POSTed fields of a member form, or the refusal to send back (too large, another site's
    page, a missing or stale form token)."""
    try:
        body = await read_body(request, FORM_LIMIT)
    except BodyTooLarge:
        return PlainTextResponse("request body too large", status_code=413)
    fields = form_fields(request.headers.get("content-type", ""), body)
    if cross_site(request) or not form_token_ok(request, subject, field(fields, "csrf")):
        return render(request, "expired_form.html", status=403)
    return fields


# ---------------------------------------------------------------- /u/<token>


async def unsubscribe_page(request: Request) -> Response:
    token = _token(request)
    links = state(request).links
    try:
        member = await run_in_threadpool(links.member, token, UNSUBSCRIBE)
        preferences = links.token_for(member.id, PREFERENCES)
    except LinkRefused:
        return refusal(request)
    if member.active:
        return render(request, "unsubscribe_confirm.html", member=member)
    return render(request, "unsubscribe_done.html", member=member, preferences=preferences, token=token,
                  csrf=form_token(request, "resubscribe:" + token))


async def unsubscribe_post(request: Request) -> Response:
    """RFC 8058 one-click (no cookie, no form token: a mail provider's server POSTs it) and the
    confirm page's button (the same body, `?via=page`)."""
    token = _token(request)
    try:
        body = await read_body(request, ONE_CLICK_LIMIT)
    except BodyTooLarge:
        return PlainTextResponse("request body too large", status_code=413)
    if not is_one_click(form_fields(request.headers.get("content-type", ""), body)):
        return PlainTextResponse("expected the body List-Unsubscribe=One-Click; nothing was changed", status_code=400)
    from_page = request.query_params.get("via") == "page"
    try:
        await run_in_threadpool(state(request).links.unsubscribe, token, one_click=not from_page)
    except LinkRefused:
        return refusal(request)
    if from_page:
        return RedirectResponse(request.url.path, status_code=303)
    return PlainTextResponse("unsubscribed")


async def resubscribe_post(request: Request) -> Response:
    token = _token(request)
    fields = await _form(request, "resubscribe:" + token)
    if isinstance(fields, Response):
        return fields
    links = state(request).links
    try:
        await run_in_threadpool(links.resubscribe, token)
        preferences = await run_in_threadpool(links.preferences_token, token, UNSUBSCRIBE)
    except LinkRefused:
        return refusal(request)
    return RedirectResponse(f"{_root(request)}/p/{preferences}?done=resubscribed", status_code=303)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


# ---------------------------------------------------------------- /p/<token>


def _preferences(request: Request, token: str, status: int = 200, error: str | None = None) -> HTMLResponse:
    member = state(request).links.member(token, PREFERENCES)
    notice = NOTICES.get(request.query_params.get("done", ""))
    return render(request, "preferences.html", status=status, member=member, notice=notice, error=error,
                  paused=member.paused(), csrf=form_token(request, "p:" + token))


async def preferences_page(request: Request) -> Response:
    try:
        return await run_in_threadpool(_preferences, request, _token(request))
    except LinkRefused:
        return refusal(request)


async def preferences_post(request: Request) -> Response:
    token = _token(request)
    fields = await _form(request, "p:" + token)
    if isinstance(fields, Response):
        return fields
    web = state(request)
    links = web.links
    action = field(fields, "action")
    done = action
    try:
        if action == "details":
            await run_in_threadpool(links.change, token, first_name=field(fields, "first_name"),
                                    last_name=field(fields, "last_name"), region=field(fields, "region"))
        elif action == "pause":
            months = field(fields, "months")
            await run_in_threadpool(links.pause, token, int(months) if months.isascii() and months.isdigit() else 0)
            done = "paused"
        elif action == "resume":
            await run_in_threadpool(links.resume, token)
            done = "resumed"
        elif action == "unsubscribe":
            await run_in_threadpool(links.unsubscribe, token, one_click=False)
            done = "unsubscribed"
        elif action == "resubscribe":
            await run_in_threadpool(links.resubscribe, token)
            done = "resubscribed"
        elif action == "data":
            data = await run_in_threadpool(links.my_data, token)
            return Response(json.dumps(data, indent=2, ensure_ascii=False) + "\n", media_type="application/json",
                            headers={"content-disposition": 'attachment; filename="my-digest-data.json"'})
        elif action == "erase":
            await run_in_threadpool(links.request_erasure, token, web.transport)
            done = "erase-sent"
        else:
            return PlainTextResponse("unknown action; nothing was changed", status_code=400)
    except LinkRefused:
        return refusal(request)
    except InputError as exc:
        return await run_in_threadpool(_preferences, request, token, 400, exc.message)
    except MemberMailFailed:
        return render(request, "try_later.html", status=503)
    return RedirectResponse(f"{request.url.path}?done={done}", status_code=303)


# ---------------------------------------------------------------- /e/<token>


async def erase_page(request: Request) -> Response:
    token = _token(request)
    try:
        member = await run_in_threadpool(state(request).links.erasure_pending, token)
    except LinkRefused:
        return refusal(request)
    return render(request, "erase_confirm.html", member=member, csrf=form_token(request, "e:" + token))


async def erase_post(request: Request) -> Response:
    token = _token(request)
    fields = await _form(request, "e:" + token)
    if isinstance(fields, Response):
        return fields
    try:
        await run_in_threadpool(state(request).links.erase, token)
    except LinkRefused:
        return refusal(request)
    return render(request, "erased.html")
