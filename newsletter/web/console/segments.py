"""Console (admins): segments, stored in the database: list with counts, edit a rule in the
segments.yaml rule language with a live count and sample (plain JS asks /admin/segments/preview as
you type), refuse a rule that does not compile with the reason, history of every version."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.accounts import log_action
from newsletter.errors import NewsletterError, ProblemsError
from newsletter.members import (
    load_segment_set,
    preview_rule,
    save_segment,
    segment_counts,
    segment_history,
    stored_segments,
)
from newsletter.web.console.guard import Ctx, back, page, render
from newsletter.web.pages import state

EXAMPLE = "all:\n  - region: [london, south-east]\n  - member_type: member\n"


@page("admin")
def segments_list(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    segment_set = load_segment_set(web.db, web.settings.project_dir)
    with web.db.session() as session:
        counts = segment_counts(session, segment_set)
    stored = {s.name: s for s in stored_segments(web.db, web.settings.project_dir)}
    return render(request, ctx, "admin/segments.html", counts=counts, stored=stored)


def _problem_text(exc: NewsletterError) -> str:
    if isinstance(exc, ProblemsError):
        return "; ".join(f"line {p.line}, column {p.col}: {p.message}" + (f" ({p.hint})" if p.hint else "")
                         for p in exc.problems)
    return exc.explained


def _editor(request: Request, ctx: Ctx, name: str, *, rule: str, description: str, create: bool, error: str = "",
            status: int = 200) -> Response:
    web = state(request)
    history = segment_history(web.db, name) if name and not create else []
    return render(request, ctx, "admin/segment.html", status=status, name=name, rule=rule, description=description,
                  create=create, error=error, history=history)


@page("admin")
def segment_new(request: Request, ctx: Ctx) -> Response:
    return _editor(request, ctx, "", rule=EXAMPLE, description="", create=True)


@page("admin")
def segment_page(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    name = str(request.path_params["name"])
    stored = {s.name: s for s in stored_segments(web.db, web.settings.project_dir)}
    if name not in stored:
        return back(request, "/segments", f"There is no segment named {name}.")
    return _editor(request, ctx, name, rule=stored[name].rule, description=stored[name].description, create=False)


@page("admin")
def segment_save(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    create = ctx.get("create") == "yes"
    name = ctx.get("name").strip() if create else str(request.path_params.get("name", ""))
    rule, description = ctx.get("rule"), ctx.get("description")
    try:
        saved = save_segment(web.db, web.settings.project_dir, name, rule, actor=ctx.user.actor,
                             description=description, create=create)
    except NewsletterError as exc:
        return _editor(request, ctx, name, rule=rule, description=description, create=create,
                       error="Not saved: " + _problem_text(exc), status=400)
    log_action(web.db, ctx.user.actor, "segment-create" if create else "segment-update", f"segment {saved.name}",
               f"version {saved.version}: {' '.join(saved.rule.split())}")
    return back(request, f"/segments/{saved.name}", f"Saved {saved.name} (version {saved.version}).")


@page("admin")
def segment_preview(request: Request, ctx: Ctx) -> Response:
    """The live count as a rule is edited: JSON {ok, count, sample} or {ok: false, error}."""
    web = state(request)
    try:
        found = preview_rule(web.db, ctx.get("rule"))
    except NewsletterError as exc:
        return JSONResponse({"ok": False, "error": _problem_text(exc)}, headers={"cache-control": "no-store"})
    return JSONResponse({"ok": True, "count": found.count,
                         "sample": [{"email": e, "name": n, "region": r} for e, n, r in found.sample]},
                        headers={"cache-control": "no-store"})
