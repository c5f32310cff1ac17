"""Console (admins): members: search and page, one member with history and consent, edit (also the
address), unsubscribe / resubscribe / erase, access JSON, CSV/XLSX import with a dry run, progress
and the reject report, and a segment's export. Member changes are audited with actor
`admin:<email>` in the members' audit log."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from newsletter.accounts import log_action
from newsletter.errors import NewsletterError, NotFound
from newsletter.members import (
    SubscriberDetails,
    access,
    again_as_import,
    audience_clause,
    change_email,
    erase,
    import_job,
    iter_export,
    load_segment_set,
    resubscribe,
    run_import_job,
    search_subscribers,
    start_import_job,
    unsubscribe,
    update_subscriber,
    write_csv,
)
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.regions import REGIONS
from newsletter.web.console.guard import Ctx, back, page, render
from newsletter.web.pages import state

PAGE_SIZE = 25


def member_actor(ctx: Ctx) -> str:
    return f"admin:{ctx.user.email}"


@page("admin")
def members_list(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    q = request.query_params
    text, region, status = q.get("q", "")[:200], q.get("region", ""), q.get("status", "")
    offset = int(q["offset"]) if q.get("offset", "").isdigit() else 0
    error = ""
    try:
        with web.db.session() as session:
            found = search_subscribers(session, text=text or None, region=region or None, status=status or None,
                                       limit=PAGE_SIZE, offset=offset)
    except NewsletterError as exc:
        found, error = None, exc.message
    segments = load_segment_set(web.db, web.settings.project_dir).names
    return render(request, ctx, "admin/members.html", found=found, q=text, region=region, status_filter=status,
                  statuses=[s.value for s in SubscriberStatus], regions=REGIONS, page_size=PAGE_SIZE, error=error,
                  segments=segments)


def _member(request: Request) -> tuple[Subscriber, str]:
    web = state(request)
    with web.db.session() as session:
        sub = session.get(Subscriber, int(request.path_params["id"]))
        if sub is None:
            raise NotFound(f"no member {request.path_params['id']}")
        return sub, sub.email or ""


def _member_page(request: Request, ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    web = state(request)
    sub, email = _member(request)
    data = None
    if sub.status != SubscriberStatus.ERASED and email:
        with web.db.session() as session:
            data = access(session, email)
    return render(request, ctx, "admin/member.html", status=status, sub=sub, data=data, regions=REGIONS, error=error)


@page("admin")
def member_page(request: Request, ctx: Ctx) -> Response:
    return _member_page(request, ctx)


@page("admin")
def member_post(request: Request, ctx: Ctx) -> Response:
    """One action on one member: details, email, unsubscribe, resubscribe, erase, access."""
    web = state(request)
    sub, email = _member(request)
    action, actor, path = ctx.get("action"), member_actor(ctx), f"/members/{sub.id}"
    try:
        if action == "access":
            with web.db.session() as session:
                data = access(session, email)
            log_action(web.db, ctx.user.actor, "member-access", f"member {sub.id}", "downloaded the access JSON")
            return Response(json.dumps(data, indent=2, ensure_ascii=False) + "\n", media_type="application/json",
                            headers={"content-disposition": f'attachment; filename="member-{sub.id}.json"',
                                     "cache-control": "no-store"})
        with web.db.write_session() as session:
            if action == "details":
                attributes = {}
                for line in ctx.get("attributes").splitlines():
                    key, sep, value = line.partition("=")
                    if sep and key.strip():
                        attributes[key.strip()] = value.strip()
                changed = update_subscriber(session, email, SubscriberDetails(
                    first_name=ctx.get("first_name"), last_name=ctx.get("last_name"),
                    organisation=ctx.get("organisation"), region=ctx.get("region") or None,
                    member_type=ctx.get("member_type"), attributes=attributes), actor=actor)
                notice = f"Saved: {', '.join(changed)}." if changed else "Nothing changed."
            elif action == "email":
                change_email(session, email, ctx.get("new_email"), actor=actor)
                notice = "The address was changed; history and consent are kept."
            elif action == "unsubscribe":
                unsubscribe(session, email, actor=actor, reason=ctx.get("reason") or "unsubscribed by an administrator")
                notice = "Unsubscribed."
            elif action == "resubscribe":
                resubscribe(session, email, actor=actor, reason=ctx.get("reason") or "resubscribed by an administrator",
                            consent_source=f"console: {ctx.user.email}")
                notice = "Subscribed again, with fresh consent."
            elif action == "erase":
                if ctx.get("confirm") != email:
                    return _member_page(request, ctx, error="To erase, type the member's address exactly.", status=400)
                erase(session, email, actor=actor, reason="GDPR erasure (console)")
                notice = "Erased: the personal data is gone; the address stays suppressed."
                path = "/members"
            else:
                return _member_page(request, ctx, error="Unknown action; nothing was changed.", status=400)
    except NewsletterError as exc:
        return _member_page(request, ctx, error=exc.explained, status=400)
    return back(request, path, notice)


# ---------------------------------------------------------------- imports


def _workdir(request: Request) -> Path:
    return state(request).settings.project_dir / "build" / "imports"


def _start(request: Request, job_id: int) -> None:
    web = state(request)
    threading.Thread(target=run_import_job, args=(web.db, job_id), name=f"import-{job_id}", daemon=True).start()


@page("admin")
def import_form(request: Request, ctx: Ctx) -> Response:
    return render(request, ctx, "admin/import.html", job=None, error="")


@page("admin", upload=True)
def import_post(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    upload = ctx.files.get("file")
    if upload is None or not upload.filename:
        return render(request, ctx, "admin/import.html", status=400, job=None, error="Choose a CSV or XLSX file.")
    try:
        job_id = start_import_job(web.db, upload.data, upload.filename, actor=member_actor(ctx),
                                  dry_run=ctx.get("dry_run") == "yes", workdir=_workdir(request))
    except NewsletterError as exc:
        return render(request, ctx, "admin/import.html", status=400, job=None, error=exc.message)
    log_action(web.db, ctx.user.actor, "member-import", f"import {job_id}",
               f"{upload.filename} ({'dry run' if ctx.get('dry_run') == 'yes' else 'import'})")
    _start(request, job_id)
    return back(request, f"/imports/{job_id}")


@page("admin")
def import_again(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    try:
        job_id = again_as_import(web.db, int(request.path_params["job"]), actor=member_actor(ctx),
                                 workdir=_workdir(request))
    except NewsletterError as exc:
        return back(request, "/members/import", exc.message)
    log_action(web.db, ctx.user.actor, "member-import", f"import {job_id}", f"after dry run {request.path_params['job']}")
    _start(request, job_id)
    return back(request, f"/imports/{job_id}")


@page("admin")
def import_page(request: Request, ctx: Ctx) -> Response:
    job = import_job(state(request).db, int(request.path_params["job"]))
    return render(request, ctx, "admin/import.html", job=job, error="")


@page("admin")
def import_status(request: Request, ctx: Ctx) -> Response:
    job = import_job(state(request).db, int(request.path_params["job"]))
    return JSONResponse({"state": job.state, "done": job.done, "total": job.total, "percent": job.percent},
                        headers={"cache-control": "no-store"})


@page("admin")
def import_report(request: Request, ctx: Ctx) -> Response:
    job = import_job(state(request).db, int(request.path_params["job"]))
    if job.state != "done" or job.report_path is None or not job.report_path.is_file():
        raise NotFound("this import has no report (yet)")
    return FileResponse(job.report_path, media_type="text/csv; charset=utf-8",
                        filename=f"import-{job.id}-report.csv", headers={"cache-control": "no-store"})


@page("admin")
def segment_export(request: Request, ctx: Ctx) -> Response:
    """A segment's audience (the members a send would go to) as CSV, formula-safe."""
    web = state(request)
    name = request.query_params.get("segment", "")
    segment_set = load_segment_set(web.db, web.settings.project_dir)
    out = io.StringIO()
    with web.db.session() as session:
        count = write_csv(iter_export(session, audience_clause(segment_set, name) if name else None), out)
    log_action(web.db, ctx.user.actor, "member-export", f"segment {name or '(all members)'}", f"{count} members")
    return Response(out.getvalue().encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{name or "members"}.csv"',
                             "cache-control": "no-store"})
