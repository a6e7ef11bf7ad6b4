"""Registrations pushed by the webinar platform: ``POST /hooks/registrations`` (the generic JSON shape) and
``POST /hooks/zoom`` (Zoom's webinar registration events and its ``endpoint.url_validation`` challenge).

Each request is checked in this order, and refused with a JSON ``{"error": ...}``:

    404  the endpoint is off: its secret is not set in the environment ([webhooks] secret_env / zoom_secret_env)
    413  body over 64 KiB
    401  signature missing or wrong, or timestamp further than [webhooks] tolerance from now (a replay)
    400  not JSON
    422  JSON that is not a registration event this service understands, an unknown session or webinar,
         an address that is not one
    200  {"outcome": "applied" | "duplicate" | "stale" | "ignored", ...}

Zoom's challenge is answered only when it is signed too: answering an unsigned one would hand anybody the
HMAC of a text of their choosing, i.e. a valid signature. Only these POST routes exist: a GET is 405.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailer.audience.contacts import InvalidAddressError
from mailer.audience.live import EventOutcome, EventResult, apply_event
from mailer.audience.pushed import (
    ZOOM_EVENTS,
    ZOOM_URL_VALIDATION,
    EventFormatError,
    RegistrationEvent,
    parse_generic,
    parse_zoom,
    zoom_event_name,
)
from mailer.errors import NotFoundError
from mailer.metrics import REGISTRATION_EVENTS, WEBHOOK_REFUSED
from mailer.web.app import WebContext, context_of
from mailer.web.jsonio import ClientError, error_response, parse_json, read_body
from mailer.web.signatures import check_signature, zoom_validation_token

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
WEBHOOK_SOURCES = ("generic", "zoom")  # the ``source`` label of the webhook metrics
GENERIC_HEADERS = ("x-mailer-timestamp", "x-mailer-signature")
ZOOM_HEADERS = ("x-zm-request-timestamp", "x-zm-signature")


async def _verified_body(
    request: Request, source: str, secret: str | None, secret_env: str, headers: tuple[str, str]
) -> Any:
    """The request's JSON once its signature and timestamp are checked; ClientError otherwise.

    ``secret_env`` names the environment variable the secret comes from, for the 404 of an endpoint that is off.
    """
    ctx = context_of(request)
    if not secret:
        WEBHOOK_REFUSED.labels(source, "secret").inc()
        raise ClientError(
            404, f"this endpoint is off: set ${secret_env} in the service's environment ({source})"
        )
    body = await read_body(request, MAX_BODY)
    problem = check_signature(
        secret,
        request.headers.get(headers[0], ""),
        request.headers.get(headers[1], ""),
        body,
        ctx.now(),
        ctx.settings.webhooks.tolerance,
    )
    if problem:
        WEBHOOK_REFUSED.labels(source, "timestamp" if "replay" in problem else "signature").inc()
        log.warning("webhook %s refused: %s", source, problem)
        raise ClientError(401, problem)
    return parse_json(body)


def _apply(ctx: WebContext, event: RegistrationEvent) -> EventResult:
    return apply_event(ctx.app.factory, ctx.settings, event, ctx.now())


async def _answer(request: Request, event: RegistrationEvent) -> Response:
    ctx = context_of(request)
    try:
        result = await run_in_threadpool(_apply, ctx, event)
    except (NotFoundError, InvalidAddressError) as exc:
        WEBHOOK_REFUSED.labels(event.source, "format").inc()
        raise ClientError(422, str(exc.args[0] if exc.args else exc)) from None
    REGISTRATION_EVENTS.labels(event.source, result.outcome.value).inc()
    log.info(
        "registration event %s %s: %s",
        event.source,
        event.action.value,
        result.outcome.value,
        extra={"event_id": event.event_id, "session": event.session_id, "queued": result.queued},
    )
    answer: dict[str, Any] = {"outcome": result.outcome.value, "event_id": event.event_id}
    if result.outcome is EventOutcome.APPLIED:
        answer.update(
            session=event.session_id,
            status=result.status.value if result.status else None,
            new_contact=result.new_contact,
            queued=result.queued,
        )
    return JSONResponse(answer)


def _parsed(source: str, parse: Callable[[], RegistrationEvent]) -> RegistrationEvent:
    """The event ``parse`` reads; ClientError(422), counted as a format refusal of ``source``, when it cannot."""
    try:
        return parse()
    except EventFormatError as exc:
        WEBHOOK_REFUSED.labels(source, "format").inc()
        raise ClientError(422, str(exc)) from None


async def generic(request: Request) -> Response:
    """``POST /hooks/registrations``: one registration event in the generic shape."""
    ctx = context_of(request)
    try:
        body = await _verified_body(
            request,
            "generic",
            ctx.settings.webhooks.secret,
            ctx.settings.webhooks.secret_env,
            GENERIC_HEADERS,
        )
        return await _answer(request, _parsed("generic", lambda: parse_generic(body)))
    except ClientError as exc:
        return error_response(exc.status, exc.message)


async def zoom(request: Request) -> Response:
    """``POST /hooks/zoom``: Zoom's URL validation or a webinar registration event."""
    ctx = context_of(request)
    secret = ctx.settings.webhooks.zoom_secret
    try:
        body = await _verified_body(
            request, "zoom", secret, ctx.settings.webhooks.zoom_secret_env, ZOOM_HEADERS
        )
        name = zoom_event_name(body)
        if name == ZOOM_URL_VALIDATION and secret:
            payload = body.get("payload") if isinstance(body, dict) else None
            plain = payload.get("plainToken") if isinstance(payload, dict) else None
            if not isinstance(plain, str) or not plain or len(plain) > 200:
                raise ClientError(422, "payload.plainToken: missing")
            return JSONResponse({"plainToken": plain, "encryptedToken": zoom_validation_token(secret, plain)})
        if name not in ZOOM_EVENTS:
            WEBHOOK_REFUSED.labels("zoom", "format").inc()
            raise ClientError(422, f"event: {name!r} is not a webinar registration event")
        return await _answer(
            request, _parsed("zoom", lambda: parse_zoom(body, ctx.settings.webhooks.zoom_webinars))
        )
    except ClientError as exc:
        return error_response(exc.status, exc.message)


ROUTES = [
    Route("/hooks/registrations", generic, methods=["POST"]),
    Route("/hooks/zoom", zoom, methods=["POST"]),
]

__all__ = ["ROUTES", "WEBHOOK_SOURCES", "generic", "zoom"]
