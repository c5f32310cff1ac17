"""Console: recurring digests (issues/digests/<name>.yaml) and their occurrences, with Approve and
Skip for an occurrence waiting for review. Scheduling rights, as for editions: comms and admins.
The buttons call the functions `newsletter digests approve|skip` calls; what they refuse (after
the deadline, already skipped, a date with no occurrence) is shown on the digest's page."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.accounts import log_action
from newsletter.content import describe
from newsletter.errors import NewsletterError
from newsletter.schedule import approve_occurrence, digest_detail, list_digests, skip_occurrence
from newsletter.web.console.guard import Ctx, back, page, render
from newsletter.web.pages import state

REASON_LIMIT = 500


def duration(delta: timedelta) -> str:
    """2 h, 30 min, 1 d 2 h: a definition's deadline or preparation time, as people write them."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min" if mins else ""]
    return " ".join(p for p in parts if p) or "0 min"


@page()
def digests_list(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    return render(request, ctx, "admin/digests.html", digests=list_digests(web.db, web.settings), duration=duration,
                  describe=describe)


def _name(request: Request) -> str:
    return str(request.path_params["name"])


def _digest_page(request: Request, ctx: Ctx, name: str, *, error: str = "", status: int = 200) -> HTMLResponse:
    web = state(request)
    info, occurrences = digest_detail(web.db, web.settings, name)
    return render(request, ctx, "admin/digest.html", status=status, info=info, occurrences=occurrences,
                  duration=duration, describe=describe, error=error)


@page()
def digest_page(request: Request, ctx: Ctx) -> Response:
    return _digest_page(request, ctx, _name(request))


def _refused(request: Request, ctx: Ctx, name: str, what: str, exc: NewsletterError) -> Response:
    """The digest's page with why nothing changed (no such digest: the console's 404 page)."""
    return _digest_page(request, ctx, name, error=f"Not {what}: {exc.explained}", status=409)


@page()
def occurrence_approve(request: Request, ctx: Ctx) -> Response:
    """`newsletter digests approve NAME DATE`: scheduled for its send time."""
    web = state(request)
    name, day = _name(request), str(request.path_params["day"])
    try:
        info = approve_occurrence(web.db, web.settings, name, day, ctx.user.actor)
    except NewsletterError as exc:
        return _refused(request, ctx, name, "approved", exc)
    sends = ", ".join(info.sends) or "no segment"
    log_action(web.db, ctx.user.actor, "digest-approve", f"digest {name} {info.occurs_on}",
               f"edition {info.edition} scheduled for {info.local_time}: {sends}")
    return back(request, f"/digests/{name}", f"Approved {name} {info.occurs_on}: edition {info.edition} is "
                                             f"scheduled for {info.local_time} ({sends}).")


@page()
def occurrence_skip(request: Request, ctx: Ctx) -> Response:
    """`newsletter digests skip NAME DATE --reason ...`: never sent (its schedule, if any, cancelled)."""
    web = state(request)
    name, day = _name(request), str(request.path_params["day"])
    reason = " ".join(ctx.get("reason").split())[:REASON_LIMIT]
    try:
        info = skip_occurrence(web.db, web.settings, name, day, ctx.user.actor, reason)
    except NewsletterError as exc:
        return _refused(request, ctx, name, "skipped", exc)
    log_action(web.db, ctx.user.actor, "digest-skip", f"digest {name} {info.occurs_on}",
               f"edition {info.edition}" + (f"; reason: {reason}" if reason else "; no reason given"))
    return back(request, f"/digests/{name}", f"Skipped {name} {info.occurs_on}: it will not be sent.")
