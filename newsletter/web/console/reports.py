"""Console: reports per edition and segment (figures, charts over time, batches), settling
uncertain batches (resend / mark delivered; confirmed and audited), and resuming a paused edition."""

from __future__ import annotations

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from newsletter.accounts import log_action
from newsletter.db import Database
from newsletter.delivery import (
    EditionReport,
    edition_report,
    event_timeline,
    get_batch,
    list_batches,
    mark_batch_delivered,
    remaining_recipients,
    reported_editions,
    requeue_batch,
    resume_edition,
)
from newsletter.errors import NewsletterError
from newsletter.web.console.charts import bar_chart, line_chart
from newsletter.web.console.guard import Ctx, back, page, render
from newsletter.web.pages import state

SERIES = (("delivered", "delivered"), ("human opens", "open"), ("clicks", "click"), ("deferred", "deferred"),
          ("bounced", "bounce"), ("spam reports", "spamreport"), ("unsubscribes", "unsubscribe"))


@page()
def reports_list(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    reports = [edition_report(web.db, e) for e in reported_editions(web.db)]
    return render(request, ctx, "admin/reports.html", reports=reports)


def _timeline_chart(title: str, db: Database, run_ids: list[int]) -> Markup:
    points = event_timeline(db, run_ids)
    times = [p.at for p in points]
    series = {label: [p.counts.get(event, 0) for p in points] for label, event in SERIES}
    return line_chart(title, times, {k: v for k, v in series.items() if any(v)} or {"delivered": [0] * len(times)})


def _charts(report: EditionReport, db: Database) -> dict[str, Markup]:
    ids = [s.run_id for s in report.segments if s.run_id is not None]
    charts = {"all": _timeline_chart(f"Edition {report.edition}: events over time (cumulative, UTC)",
                                      db, ids)}
    for s in report.segments:
        if s.run_id is not None:
            charts[s.segment] = _timeline_chart(f"{s.segment}: events over time", db, [s.run_id])
    charts["audience"] = bar_chart("Delivered per segment", [(s.segment, s.delivered) for s in report.segments])
    return charts


@page()
def report_page(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    edition = str(request.path_params["edition"])
    report = edition_report(web.db, edition)
    batches = {s.segment: list_batches(web.db, s.run_id) for s in report.segments if s.run_id is not None}
    left = remaining_recipients(web.db, edition) if report.pause else 0
    return render(request, ctx, "admin/report.html", report=report, charts=_charts(report, web.db), batches=batches,
                  remaining=left, error="")


@page()
def batch_confirm(request: Request, ctx: Ctx) -> Response:
    """The confirmation step before a batch is settled: what it is and what the choice does."""
    web = state(request)
    run_id, seq = int(request.path_params["run"]), int(request.path_params["seq"])
    action = request.query_params.get("action", "")
    if action not in ("delivered", "resend"):
        return back(request, "/reports")
    batch = get_batch(web.db, run_id, seq)
    return render(request, ctx, "admin/batch_confirm.html", batch=batch, action=action,
                  edition=request.query_params.get("edition", ""))


@page()
def batch_settle(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    run_id, seq = int(request.path_params["run"]), int(request.path_params["seq"])
    edition = ctx.get("edition")
    action = ctx.get("action")
    reason = ctx.get("reason")
    if ctx.get("confirm") != "yes":
        return back(request, f"/reports/{edition}", "Nothing was changed: the confirmation box was not ticked.")
    try:
        settle = mark_batch_delivered if action == "delivered" else requeue_batch
        change = settle(web.db, run_id, seq, actor=ctx.user.actor, reason=reason)
    except NewsletterError as exc:
        return back(request, f"/reports/{edition}", f"Nothing was changed: {exc.message}")
    what = "marked delivered" if action == "delivered" else "queued to be sent again by the next send"
    if not change.changed:
        return back(request, f"/reports/{edition}", f"Batch {seq} of run {run_id} is already {change.new_status}.")
    return back(request, f"/reports/{edition}", f"Batch {seq} of run {run_id} {what} (audited).")


@page()
def edition_resume(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    edition = str(request.path_params["edition"])
    if ctx.get("confirm") != "yes":
        return back(request, f"/reports/{edition}", "Still paused: the confirmation box was not ticked.")
    try:
        pause = resume_edition(web.db, edition, actor=ctx.user.actor)
    except NewsletterError as exc:
        return back(request, f"/reports/{edition}", exc.message)
    log_action(web.db, ctx.user.actor, "edition-resume", f"edition {edition}",
               f"was paused: {pause.reason}; reason given: {ctx.get('reason')[:500]}")
    return back(request, f"/reports/{edition}", f"Edition {edition} resumed: the next send of it sends the "
                                                f"{remaining_recipients(web.db, edition):,} waiting recipients.")
