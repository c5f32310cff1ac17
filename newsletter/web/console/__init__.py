"""The console under `/admin/`: comms (editions, previews, test sends, schedules, digests, reports) and
admins (also members, segments, users). Server-rendered; a little plain JS (static/console.js) for
the live segment count and the import progress bar. Handlers parse, call the stage packages (the
same functions as the CLI) and render; `guard.page` does sign-in, roles and form tokens."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from newsletter.schedule import edition_summaries
from newsletter.web.console import auth_pages, digests, editions, members, reports, segments, users
from newsletter.web.console.guard import Ctx, page, render
from newsletter.web.pages import state


@page()
def home(request: Request, ctx: Ctx) -> Response:
    web = state(request)
    return render(request, ctx, "admin/home.html", editions=edition_summaries(web.db, web.settings)[:6])


ROUTES: list[BaseRoute] = [
    Route("/", home),
    Route("/login", auth_pages.login_page, methods=["GET", "HEAD"]),
    Route("/login", auth_pages.login_post, methods=["POST"]),
    Route("/logout", auth_pages.logout_post, methods=["POST"]),
    Route("/set-password/{token}", auth_pages.set_password_page, methods=["GET", "HEAD"]),
    Route("/set-password/{token}", auth_pages.set_password_post, methods=["POST"]),
    Route("/editions", editions.editions_list),
    Route("/editions/{edition}", editions.edition_page),
    Route("/editions/{edition}/check", editions.edition_check, methods=["POST"]),
    Route("/editions/{edition}/preview", editions.edition_preview),
    Route("/editions/{edition}/test", editions.edition_test, methods=["POST"]),
    Route("/editions/{edition}/schedule", editions.edition_schedule, methods=["POST"]),
    Route("/editions/{edition}/move", editions.edition_move, methods=["POST"]),
    Route("/editions/{edition}/cancel", editions.edition_cancel, methods=["POST"]),
    Route("/digests", digests.digests_list),
    Route("/digests/{name}", digests.digest_page),
    Route("/digests/{name}/{day}/approve", digests.occurrence_approve, methods=["POST"]),
    Route("/digests/{name}/{day}/skip", digests.occurrence_skip, methods=["POST"]),
    Route("/reports", reports.reports_list),
    Route("/reports/{edition}", reports.report_page),
    Route("/reports/{edition}/resume", reports.edition_resume, methods=["POST"]),
    Route("/runs/{run:int}/batches/{seq:int}", reports.batch_confirm),
    Route("/runs/{run:int}/batches/{seq:int}", reports.batch_settle, methods=["POST"]),
    Route("/members", members.members_list),
    Route("/members/export", members.segment_export),
    Route("/members/import", members.import_form),
    Route("/members/import", members.import_post, methods=["POST"]),
    Route("/members/{id:int}", members.member_page),
    Route("/members/{id:int}", members.member_post, methods=["POST"]),
    Route("/imports/{job:int}", members.import_page),
    Route("/imports/{job:int}/status", members.import_status),
    Route("/imports/{job:int}/report", members.import_report),
    Route("/imports/{job:int}/import", members.import_again, methods=["POST"]),
    Route("/segments", segments.segments_list),
    Route("/segments/new", segments.segment_new),
    Route("/segments/new", segments.segment_save, methods=["POST"]),
    Route("/segments/preview", segments.segment_preview, methods=["POST"]),
    Route("/segments/{name}", segments.segment_page),
    Route("/segments/{name}", segments.segment_save, methods=["POST"]),
    Route("/users", users.users_page),
    Route("/users", users.users_post, methods=["POST"]),
    Route("/audit", users.audit_page),
]

__all__ = ["ROUTES"]
