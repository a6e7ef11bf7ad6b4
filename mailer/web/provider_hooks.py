"""``POST /webhooks/<provider>``: bounces, complaints and deliveries posted by the sending provider.

Safe by default: a provider not enabled in ``[bounces.webhooks]`` is 404; a body over :data:`MAX_BODY` is
413; an unsigned, wrongly signed, replayed or malformed request is refused with 4xx (503 when the
provider's secret is not set) and logged, never acted on (mailer.delivery.providers). A verified request's
events go through the same attribution and policy as mailbox reports (mailer.delivery.handling), each in
its own savepoint and recorded once by the provider's event id, so a retried or duplicated post changes
nothing. An SNS SubscriptionConfirmation is confirmed by GETting its SubscribeURL through the app's fetcher.

These paths carry no session cookie and no CSRF token: the provider's signature is the authorisation
(mailer.web.auth exempts them).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mailer.delivery.handling import apply_report, policy_for
from mailer.delivery.providers import Certificates, ProviderEvent, Webhook, read_webhook
from mailer.errors import WebhookRefusedError
from mailer.web.app import WebContext, context_of

log = logging.getLogger(__name__)

MAX_BODY = (
    1024 * 1024
)  # bytes: SendGrid batches stay well under this; one SES, Postmark or Mailgun event is small
PREFIX = "/webhooks/"


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(provider: str, client: str, status: int, reason: str) -> Response:
    log.warning("webhook %s from %s refused (%d): %s", provider, client, status, reason)
    answer = {401: "Unauthorized", 404: "Not found", 413: "Too large", 503: "Not configured"}.get(
        status, "Refused"
    )
    headers = {"WWW-Authenticate": 'Basic realm="webhooks"'} if status == 401 else None
    return PlainTextResponse(f"{status}: {answer}", status_code=status, headers=headers)


def _apply(ctx: WebContext, provider: str, events: tuple[ProviderEvent, ...], now: datetime) -> Counter[str]:
    """Apply ``events`` in one transaction, each in a savepoint; counts by outcome for the answer."""
    policy = policy_for(ctx.settings)
    counts: Counter[str] = Counter()
    with ctx.db() as db:
        for event in events:
            with db.begin_nested():
                handled = apply_report(
                    db, event.report, now, key=event.key, policy=policy, source=f"webhook:{provider}"
                )
            if handled.duplicate:
                counts["duplicate"] += 1
                log.info("webhook %s event %s: already handled", provider, event.event_id)
                continue
            counts[handled.kind.value] += 1
            log.info("webhook %s event %s: %s", provider, event.event_id, handled.outcome)
    return counts


async def provider_hook(request: Request) -> Response:
    """Verify and apply one provider's post; see the module docstring for the answers."""
    ctx = context_of(request)
    provider = request.path_params["provider"]
    client = request.client.host if request.client else "?"
    hook = ctx.settings.bounces.webhooks.get(provider)
    if hook is None:
        return _refuse(provider[:40], client, 404, "no such provider webhook enabled")
    try:
        body = await _body(request)
    except ClientDisconnect:
        return _refuse(provider, client, 400, "client disconnected")
    if body is None:
        return _refuse(provider, client, 413, f"body larger than {MAX_BODY} bytes")
    headers = {name.lower(): value for name, value in request.headers.items()}
    certificates: Certificates = request.app.state.certificates
    now = ctx.now()
    try:
        webhook: Webhook = await run_in_threadpool(read_webhook, headers, body, hook, now, certificates)
    except WebhookRefusedError as exc:
        return _refuse(provider, client, exc.status, exc.reason)
    if webhook.confirm_url:
        try:
            await run_in_threadpool(certificates.fetch, webhook.confirm_url)
        except OSError as exc:
            log.error("webhook ses: confirming the SNS subscription failed: %s", exc)
            return PlainTextResponse("502: confirmation failed", status_code=502)
        log.info("webhook ses: SNS subscription confirmed (%s)", webhook.confirm_url.partition("?")[0])
        return PlainTextResponse("subscription confirmed")
    counts = await run_in_threadpool(_apply, ctx, provider, webhook.events, now)
    if webhook.ignored:
        counts["ignored"] += webhook.ignored
    summary = ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "nothing"
    return PlainTextResponse(f"ok: {summary}")


ROUTES = [Route(PREFIX + "{provider}", provider_hook, methods=["POST"])]

__all__ = ["MAX_BODY", "ROUTES", "provider_hook"]
