"""POST /webhooks/sendgrid: SendGrid's signed Event Webhook. A request without a valid, fresh
signature is refused with 403 before its body is parsed; nothing of it is stored."""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter.delivery import ingest_events, verify_signature
from newsletter.web.forms import WEBHOOK_LIMIT, BodyTooLarge, read_body
from newsletter.web.pages import state

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
log = logging.getLogger("newsletter.web")


async def sendgrid_events(request: Request) -> Response:
    web = state(request)
    if web.webhook_checker is None:
        log.warning("SendGrid event webhook called but NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not set: refused")
        return PlainTextResponse("webhook verification key not configured", status_code=403)
    try:
        body = await read_body(request, WEBHOOK_LIMIT)
    except BodyTooLarge:
        return PlainTextResponse("request body too large", status_code=413)
    if not verify_signature(web.webhook_checker, request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP), body):
        return PlainTextResponse("bad or missing signature", status_code=403)
    try:
        events = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return PlainTextResponse("expected a JSON array of events", status_code=400)
    if not isinstance(events, list):
        return PlainTextResponse("expected a JSON array of events", status_code=400)
    result = await run_in_threadpool(ingest_events, web.db, events, settings=web.settings, transport=web.transport)
    return JSONResponse(result.as_dict())
