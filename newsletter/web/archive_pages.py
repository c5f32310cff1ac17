"""The archive: /archive/ lists the editions whose send has started; /archive/<edition>/<segment>
shows one variant with neutral values (no name, no address, no working link token)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.delivery import archived_editions, archived_html
from newsletter.regions import BY_SLUG
from newsletter.web.pages import render, state
from newsletter.web.security import EMAIL_CSP


async def archive_index(request: Request) -> Response:
    entries = await run_in_threadpool(archived_editions, state(request).db)
    editions: dict[str, list[object]] = {}
    for entry in entries:
        editions.setdefault(entry.edition, []).append(entry)
    return render(request, "archive.html", editions=editions, known_regions=BY_SLUG)


async def archive_variant(request: Request) -> Response:
    web = state(request)
    edition, segment = str(request.path_params["edition"]), str(request.path_params["segment"])
    help_url = web.links.url("help")
    page = await run_in_threadpool(archived_html, web.db, edition, segment, help_url)
    if page is None:
        return render(request, "not_found.html", status=404)
    return HTMLResponse(page, headers={"content-security-policy": EMAIL_CSP, "cache-control": "public, max-age=300"})
