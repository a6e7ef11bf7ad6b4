"""The Starlette application: routes, middleware and the shared :class:`WebContext`.

Middleware, outermost first: security headers (CSP, no framing, no referrer, no caching), a busy store
answered 503 with ``Retry-After`` (:class:`StoreBusy`), request limits
(:mod:`mailer.web.inputs`), forwarded headers from trusted proxies (:mod:`mailer.web.proxy`), the signed
session cookie, then :class:`mailer.web.auth.GuardMiddleware` (server-side session, roles, CSRF). Route handlers that touch the
database are plain functions (Starlette runs them in its thread pool) or hand their work to
``run_in_threadpool``, so the event loop shared with the scheduler never waits on the store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as DbSession
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.app import App, outgoing
from mailer.compose.links import derived_key
from mailer.compose.outgoing import Outgoing
from mailer.compose.render import Renderer
from mailer.config import Settings
from mailer.delivery.providers import Certificates, Fetch, fetch_https
from mailer.store.engine import transaction
from mailer.store.outbox import SessionChange, session_sequences, sync_sessions
from mailer.store.recorder import store_busy
from mailer.timeline.clock import Clock, SystemClock
from mailer.web.auth import GuardMiddleware, csrf_token
from mailer.web.inputs import RequestLimits
from mailer.web.proxy import ForwardedHeaders, networks, public_origin
from mailer.web.sessions import SessionPolicy
from mailer.web.throttle import LoginThrottle
from mailer.zones import UnknownZoneError, resolve_zone

log = logging.getLogger(__name__)

SESSION_COOKIE = "mailer_session"

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'"
)


def web_templates_dir(settings: Settings) -> Path:
    """``templates/web`` under the project root (beside ``templates/email``)."""
    for candidate in (
        settings.base_dir / "templates" / "web",
        Path(__file__).resolve().parents[2] / "templates" / "web",
    ):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no templates/web folder under {settings.base_dir}")


@dataclass
class WebContext:
    """What every handler shares: the store, the clock, the e-mail renderer, the maker of the messages the
    service sends (previews and tests use it) and the page templates."""

    app: App
    clock: Clock
    renderer: Renderer
    outgoing: Outgoing
    templates: Jinja2Templates
    throttle: LoginThrottle
    secure_cookies: bool
    sessions: SessionPolicy
    seen_sequences: dict[str, int] = field(default_factory=dict)  # session -> SEQUENCE this process last saw

    @property
    def settings(self) -> Settings:
        return self.app.settings

    def sync_sessions(self, db: DbSession, now: datetime) -> list[SessionChange]:
        """:func:`mailer.store.outbox.sync_sessions` with this process's config and its memory of each session's
        SEQUENCE (noted at start-up): a session changed since by a process with a newer config is left alone,
        never moved back."""
        return sync_sessions(db, self.settings, now, seen=self.seen_sequences)

    @contextmanager
    def db(self) -> Iterator[DbSession]:
        """One transaction: commit on success, roll back on error."""
        with transaction(self.app.factory) as db:
            yield db

    def now(self) -> datetime:
        return self.clock.now()

    def page(
        self, request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
    ) -> Response:
        """Render a page template with ``request``, the signed-in user and ``context``."""
        return self.templates.TemplateResponse(request, name, context or {}, status_code=status_code)


def context_of(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def _utc(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime(fmt) + " UTC"


def _in_zone(value: datetime | None, zone: str, fmt: str = "%a %d %b %Y %H:%M") -> str:
    if value is None:
        return ""
    try:
        local = value.astimezone(resolve_zone(zone))
    except UnknownZoneError:
        return _utc(value, fmt)
    return f"{local.strftime(fmt)} ({local.strftime('%z')[:3]}:{local.strftime('%z')[3:]})"


def _session_time(value: datetime | None, zone: str, fmt: str = "%a %d %b %Y %H:%M") -> str:
    """A session's time in its zone with the zone named once: "Tue 13 Jul 2021 10:00 UTC-03:00" for an
    offset zone (its name is the offset), "Mon 08 Dec 2021 10:00 (+08:00) Asia/Manila" for an IANA zone."""
    if value is None:
        return ""
    if re.fullmatch(r"UTC[+-]\d\d:\d\d", zone):
        return f"{value.astimezone(resolve_zone(zone)).strftime(fmt)} {zone}"
    return f"{_in_zone(value, zone, fmt)} {zone}"


def _templates(directory: Path) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=_utc, in_zone=_in_zone, session_time=_session_time)

    def processor(request: Request) -> dict[str, Any]:
        return {
            "user": getattr(request.state, "user", None),
            "csrf": lambda: csrf_token(request.session),
            "path": request.url.path,
        }

    return Jinja2Templates(env=env, context_processors=[processor])


class HttpMiddleware:
    """An ASGI middleware that acts on HTTP requests (:meth:`http`) and passes every other scope on as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request; the default passes it on."""
        await self.app(scope, receive, send)


class SecurityHeaders(HttpMiddleware):
    """Adds CSP, framing, referrer, sniffing and caching headers to every response that has none of its own."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")  # tokens in URLs never leak onwards
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


MACHINE_PREFIXES = ("/api/", "/hooks/")  # answered in JSON


RETRY_AFTER = 5  # seconds a client is asked to wait when the store is busy


class StoreBusy(HttpMiddleware):
    """Answers 503 with ``Retry-After`` when a handler (or the sign-in guard) could not get the store: a
    SQLAlchemy ``OperationalError`` such as SQLite's "database is locked" after its busy timeout, a PostgreSQL
    lock timeout or a lost connection. Never a 500 for a store that is only busy; nothing was changed, so
    the same request may be sent again."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started or not store_busy(exc):
                raise
            log.warning("%s %s: the store is busy (%s); answered 503", scope["method"], scope["path"], exc)
            response = PlainTextResponse(
                "503: the service is busy, please try again in a few seconds",
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER)},
            )
            await response(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Server error"
    if request.url.path.startswith(MACHINE_PREFIXES):
        return JSONResponse({"error": detail}, status_code=status, headers=getattr(exc, "headers", None))
    return PlainTextResponse(f"{status}: {detail}", status_code=status)


def _home(request: Request) -> Response:
    return RedirectResponse("/staff/", status_code=303)


def trusted_proxies(settings: Settings) -> tuple[str, ...]:
    """``web.trusted_proxies``: addresses whose forwarded headers are believed (none by default)."""
    return settings.web.trusted_proxies


def session_policy(settings: Settings) -> SessionPolicy:
    """Idle and absolute session lifetimes (``web.session_idle``, ``web.session_max``)."""
    return SessionPolicy(idle=settings.web.session_idle, longest=settings.web.session_max)


def create_app(
    app: App,
    *,
    clock: Clock | None = None,
    renderer: Renderer | None = None,
    throttle: LoginThrottle | None = None,
    fetch: Fetch | None = None,
) -> Starlette:
    """The ASGI application for ``app``'s store and settings.

    ``clock`` defaults to the system clock (tests pass a virtual one); ``renderer`` to one built from the
    settings (it parses every e-mail template now: a broken template fails here, not on a page); ``fetch``
    (GET an https URL) to :func:`mailer.delivery.providers.fetch_https` (SNS certificates and subscription
    confirmations; tests pass their own).
    Raises FileNotFoundError without ``templates/web``, :class:`mailer.errors.RenderError` for bad templates and
    :class:`mailer.errors.ConfigError` for an unusable DKIM key.
    """
    from mailer.web import (
        api,
        contacts,
        imports,
        metrics,
        organisers,
        participants,
        provider_hooks,
        staff,
        suppressions,
        webhooks,
    )

    settings = app.settings
    directory = web_templates_dir(settings)
    secure = settings.web.base_url.startswith("https://")
    messages = outgoing(settings, renderer)
    policy = session_policy(settings)
    ctx = WebContext(
        app=app,
        clock=clock or SystemClock(),
        renderer=messages.renderer,
        outgoing=messages,
        templates=_templates(directory),
        throttle=throttle or LoginThrottle(),
        secure_cookies=secure,
        sessions=policy,
    )
    try:
        with transaction(app.factory) as db:
            ctx.seen_sequences.update(session_sequences(db))
    except SQLAlchemyError:  # a store not set up yet: nothing stored to leave alone
        pass
    routes = [
        Route("/", _home),
        *metrics.ROUTES,
        *webhooks.ROUTES,
        *api.ROUTES,
        *participants.ROUTES,
        *staff.ROUTES,
        *suppressions.ROUTES,
        *contacts.ROUTES,
        *organisers.ROUTES,
        *imports.ROUTES,
        *provider_hooks.ROUTES,
        Mount("/static", StaticFiles(directory=directory / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(StoreBusy),
        Middleware(RequestLimits),
        Middleware(ForwardedHeaders, trusted=networks(trusted_proxies(settings))),
        Middleware(
            SessionMiddleware,
            secret_key=derived_key(settings, "sessions").hex(),
            session_cookie=SESSION_COOKIE,
            max_age=int(policy.longest.total_seconds()),
            same_site="lax",
            https_only=secure,
        ),
        Middleware(
            GuardMiddleware,
            factory=app.factory,
            clock=ctx.clock,
            policy=policy,
            public_origin=public_origin(settings.web.base_url),
        ),
    ]
    web = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _not_found})
    web.state.ctx = ctx
    web.state.certificates = Certificates(fetch or fetch_https)
    return web


__all__ = ["WebContext", "context_of", "create_app", "web_templates_dir"]
