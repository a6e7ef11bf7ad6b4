"""Sign-in and sign-out of the dashboard (GET and POST /login, POST /logout), and the signed-in user of a
staff page."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailer.web.app import context_of
from mailer.web.auth import CurrentUser, session_token, sign_in
from mailer.web.sessions import end_session, start_session
from mailer.web.users import authenticate

log = logging.getLogger(__name__)


def user_of(request: Request) -> CurrentUser:
    """The signed-in user (the guard has made sure there is one on staff paths)."""
    user: CurrentUser | None = request.state.user
    if user is None:
        raise HTTPException(403, "sign in first")
    return user


def _safe_next(target: str) -> str:
    """A local path to go back to after sign-in (never another site)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/staff/"


async def login(request: Request) -> Response:
    ctx = context_of(request)
    if request.method != "POST":
        return ctx.page(
            request,
            "staff/login.html",
            {"next": _safe_next(request.query_params.get("next", "")), "error": ""},
        )
    form = await request.form()
    username = str(form.get("username", "")).strip()[:100]
    if not username.isprintable():
        username = ""  # control characters: no account has them (and PostgreSQL refuses NUL)
    password = str(form.get("password", ""))[:1000]
    target = _safe_next(str(form.get("next", "")))
    client = request.client.host if request.client else "?"
    wait = ctx.throttle.wait(username, client)
    if wait > 0:
        log.warning("sign-in as %r from %s refused: %.0f s to wait after failures", username, client, wait)
        minutes = f"{wait / 60:.0f} minutes" if wait >= 90 else f"{max(1, round(wait))} seconds"
        response = ctx.page(
            request,
            "staff/login.html",
            {"next": target, "error": f"Too many failed attempts: wait {minutes} and try again."},
            status_code=429,
        )
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    agent = request.headers.get("user-agent", "")

    def check() -> str:
        with ctx.db() as db:
            user = authenticate(db, username, password, ctx.now())
            return start_session(db, user, ctx.now(), client, agent, ctx.sessions) if user is not None else ""

    token = await run_in_threadpool(check)
    if not token:
        failures = ctx.throttle.failed(username, client)
        log.warning("failed sign-in as %r from %s (%d in a row)", username, client, failures)
        return ctx.page(
            request,
            "staff/login.html",
            {"next": target, "error": "Wrong username or password."},
            status_code=401,
        )
    ctx.throttle.succeeded(username, client)
    sign_in(request.session, token)
    log.info("%s signed in from %s", username, client)
    return RedirectResponse(target, status_code=303)


def logout(request: Request) -> Response:
    """End the server-side session (a saved copy of the cookie opens nothing afterwards)."""
    ctx = context_of(request)
    token = session_token(request.session)
    if token:
        with ctx.db() as db:
            end_session(db, token)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
