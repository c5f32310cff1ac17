"""Console: editions (list with state, check problems, preview, test send, schedule, move, cancel)."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.accounts import log_action
from newsletter.content import zone
from newsletter.delivery import send_test
from newsletter.errors import GateFailed, NewsletterError
from newsletter.members import stored_defined_segments
from newsletter.models import utcnow
from newsletter.render import BuildGateFailed, build_edition, render_preview
from newsletter.schedule import cancel, edition_summaries, edition_summary, move_sends, proof_build, schedule_edition
from newsletter.web.console.guard import Ctx, back, page, render
from newsletter.web.pages import state

# The preview page's own policy (as `newsletter preview --serve` sends it): its inline styles and the
# emails' https images in sandboxed srcdoc frames, nothing that runs, and never framed elsewhere.
PREVIEW_CSP = ("default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; font-src https: data:; "
               "frame-src 'self' about:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@page()
def editions_list(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    return render(request, ctx, "admin/editions.html", editions=edition_summaries(web.db, web.settings))


def _edition(request: Request) -> str:
    return str(request.path_params["edition"])


@page()
def edition_page(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    summary = edition_summary(web.db, web.settings, _edition(request))
    tz = zone(web.settings.timezone)
    waiting = [s.send_at for s in summary.segments if s.state == "scheduled" and s.send_at is not None]
    moment = min(waiting) if waiting else utcnow() + timedelta(hours=1)  # the move form starts from the next send
    default_at = moment.astimezone(tz).replace(second=0, microsecond=0, tzinfo=None)
    return render(request, ctx, "admin/edition.html", edition=summary, zone_name=web.settings.timezone,
                  default_at=f"{default_at:%Y-%m-%dT%H:%M}", error="",
                  gates=None)


def _fail(request: Request, ctx: Ctx, edition: str, message: str, status: int = 400) -> HTMLResponse:
    web = state(request)
    summary = edition_summary(web.db, web.settings, edition)
    return render(request, ctx, "admin/edition.html", status=status, edition=summary, zone_name=web.settings.timezone,
                  default_at=ctx.get("at"), error=message, gates=None)


@page()
def edition_check(request: Request, ctx: Ctx) -> Response:
    """`check`: the manifest's problems, then a build into a temporary folder and its gates."""
    web = state(request)
    summary = edition_summary(web.db, web.settings, _edition(request))
    gates: list[tuple[str, str, list[str]]] = []
    if not summary.errors:
        with tempfile.TemporaryDirectory(prefix="newsletter-check-") as tmp:
            try:
                build = build_edition(summary.manifest, web.settings, Path(tmp) / "build",
                                      segments=stored_defined_segments(web.db, web.settings.project_dir))
            except BuildGateFailed as exc:
                build = exc.result
            except NewsletterError as exc:
                return _fail(request, ctx, summary.edition, exc.message)
            gates = [(v.segment, v.gates.summary(), [*v.gates.failed, *v.gates.warnings]) for v in build.variants]
    return render(request, ctx, "admin/edition.html", edition=summary, zone_name=web.settings.timezone,
                  default_at="", error="", gates=gates)


@page()
def edition_preview(request: Request, ctx: Ctx) -> Response:
    """The same page as `newsletter preview`: every variant at 600 and 375 px."""
    web = state(request)
    summary = edition_summary(web.db, web.settings, _edition(request))
    if summary.errors:
        return _fail(request, ctx, summary.edition, "The manifest has problems (below); fix them to preview it.")
    with tempfile.TemporaryDirectory(prefix="newsletter-preview-") as tmp:
        try:
            build_edition(summary.manifest, web.settings, Path(tmp) / "build",
                          segments=stored_defined_segments(web.db, web.settings.project_dir))
        except GateFailed:
            if not (Path(tmp) / "build" / "build.json").is_file():
                raise
        page_html = render_preview(Path(tmp) / "build")
    return HTMLResponse(page_html, headers={"content-security-policy": PREVIEW_CSP, "cache-control": "no-store"})


@page()
def edition_test(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    edition = _edition(request)
    summary = edition_summary(web.db, web.settings, edition)
    addresses = [ctx.user.email] if ctx.get("to") == "me" else [ctx.get("addresses")]
    segments = [s for s in ctx.all("segment") if s != "*"] or None
    try:
        build_dir = proof_build(web.db, web.settings, summary.manifest)
        done = send_test(web.settings, build_dir, addresses, transport=web.transport, segments=segments)
    except NewsletterError as exc:
        return _fail(request, ctx, edition, exc.message)
    log_action(web.db, ctx.user.actor, "test-send", f"edition {done.edition}",
               f"variants {', '.join(done.segments)} to {', '.join(done.addresses)}")
    return back(request, f"/editions/{edition}", f"Test of {', '.join(done.segments)} sent to "
                                                  f"{', '.join(done.addresses)} (subject starts with [TEST]).")


def _at(ctx: Ctx) -> str:
    """The date-time picker's value (local, e.g. 2026-12-03T08:00), as the CLI reads it."""
    return ctx.get("at").strip().replace("T", " ")


@page()
def edition_schedule(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    edition = _edition(request)
    summary = edition_summary(web.db, web.settings, edition)
    segments = [s for s in ctx.all("segment") if s != "*"] or None
    at = _at(ctx) or None
    try:
        infos = schedule_edition(web.db, web.settings, summary.manifest, segments=segments, at=at)
    except NewsletterError as exc:
        return _fail(request, ctx, edition, exc.explained)
    detail = "; ".join(f"{i.segment} at {i.local_time}" for i in infos)
    log_action(web.db, ctx.user.actor, "schedule", f"edition {edition}", detail)
    return back(request, f"/editions/{edition}", f"Scheduled: {detail}.")


@page()
def edition_move(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    edition = _edition(request)
    segment = ctx.get("segment")
    try:
        every = segment in ("", "*")
        infos = move_sends(web.db, web.settings, edition, _at(ctx), segments=None if every else [segment], all_segments=every)
    except NewsletterError as exc:
        return _fail(request, ctx, edition, exc.explained)
    detail = "; ".join(f"{i.segment} to {i.local_time}" for i in infos)
    log_action(web.db, ctx.user.actor, "schedule-move", f"edition {edition}", detail)
    return back(request, f"/editions/{edition}", f"Moved: {detail}.")


@page()
def edition_cancel(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    edition = _edition(request)
    segment = ctx.get("segment")
    try:
        infos = cancel(web.db, web.settings, edition, None if segment in ("", "*") else segment)
    except NewsletterError as exc:
        return _fail(request, ctx, edition, exc.explained)
    detail = ", ".join(f"{i.segment} ({i.state})" for i in infos)
    log_action(web.db, ctx.user.actor, "schedule-cancel", f"edition {edition}", detail)
    return back(request, f"/editions/{edition}", f"Cancelled: {detail}.")
