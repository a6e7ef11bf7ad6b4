"""Staff sign-in: the current user, CSRF tokens, and the ASGI guard that enforces them.

The cookie is Starlette's signed cookie (itsdangerous; HttpOnly, SameSite=Lax, Secure when the base URL is
https) holding the token of a server-side session (:mod:`mailer.web.sessions`, checked on every request,
so signing out or a password change ends it at once) and the CSRF token. :class:`GuardMiddleware` runs
before every route:

- ``/staff/...`` and ``/organise/...`` refuse anonymous requests (GET: redirect to the sign-in page; any
  other method: 403); ``/organise/...`` also needs the organiser role.
- Every unsafe request (POST, PUT, PATCH, DELETE) outside :data:`TOKEN_PREFIXES` (participants' signed
  links, API tokens, signed webhooks under ``/hooks/`` and ``/webhooks/``) must carry the session's CSRF
  token in the form field ``csrf_token`` (or the ``X-CSRF-Token`` header) and, when the browser sends an
  Origin, come from this site (the public origin of ``web.base_url``, or the one the request was addressed
  to); otherwise 403.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote_plus

from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.store.engine import transaction
from mailer.store.models import StaffRole
from mailer.timeline.clock import Clock
from mailer.web.sessions import SessionPolicy, session_user

PROTECTED_PREFIXES = ("/staff", "/organise")
ORGANISER_PREFIXES = ("/organise",)
# The token is the authorisation: participants' signed links, API bearer tokens, signed webhooks
# (registrations under /hooks/, the sending providers' bounce reports under /webhooks/: provider_hooks).
TOKEN_PREFIXES = ("/u/", "/rsvp/", "/api/", "/hooks/", "/webhooks/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 64 * 1024
UPLOAD_PATHS = frozenset({"/organise/imports/check"})  # organisers' files: up to MAX_UPLOAD_BYTES
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class CurrentUser:
    """The signed-in account, detached from the database."""

    id: int
    username: str
    email: str
    role: StaffRole

    @property
    def is_organiser(self) -> bool:
        return self.role == StaffRole.ORGANISER


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def sign_in(session: dict[str, Any], token: str) -> None:
    """Put a new server-side session's ``token`` in the cookie (a new CSRF token too: no fixation of a
    pre-sign-in value)."""
    session.clear()
    session.update(sid=token, csrf=secrets.token_urlsafe(32))


def session_token(session: dict[str, Any]) -> str:
    """The server-side session token in the cookie ("" when signed out)."""
    token = session.get("sid")
    return token if isinstance(token, str) else ""


def _load_user(factory: Any, token: str, now: datetime, policy: SessionPolicy) -> CurrentUser | None:
    with transaction(factory) as db:
        user = session_user(db, token, now, policy)
        if user is None:
            return None
        return CurrentUser(user.id, user.username, user.email, StaffRole(user.role))


def _form_token(body: bytes, content_type: str) -> str:
    if content_type.startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get(CSRF_FIELD, [""])
        return values[0]
    if content_type.startswith("multipart/form-data"):
        marker = f'name="{CSRF_FIELD}"'.encode()
        at = body.find(marker)
        if at >= 0:
            start = body.find(b"\r\n\r\n", at)
            end = body.find(b"\r\n", start + 4)
            if start >= 0 and end >= 0:
                return body[start + 4 : end].decode("ascii", "replace")
    return ""


def _form_holds_nul(body: bytes, content_type: bytes) -> bool:
    """True when a URL-encoded form's field (name or value) holds a NUL character, which no store keeps
    (PostgreSQL's text refuses it): refused for every form at once, before any handler reads it."""
    if not content_type.startswith(b"application/x-www-form-urlencoded"):
        return False
    return "\x00" in unquote_plus(body.decode("latin-1"))


def _same_origin(scope: Scope, origin: str, public: str) -> bool:
    """``origin`` is the site's public origin (from ``web.base_url``: behind a TLS proxy the request itself
    arrives over http) or the origin the request was addressed to (scheme from a trusted proxy)."""
    if origin == public:
        return True
    headers = dict(scope["headers"])
    host = headers.get(b"host", b"").decode("latin-1").lower()
    scheme = scope.get("scheme", "http")
    return origin == f"{scheme}://{host}"


class GuardMiddleware:
    """Pure ASGI middleware: sign-in and role checks on staff paths, CSRF on every unsafe request.

    Must run inside Starlette's SessionMiddleware (it reads ``scope["session"]``).
    """

    def __init__(
        self, app: ASGIApp, factory: Any, clock: Clock, policy: SessionPolicy, public_origin: str
    ) -> None:
        self.app = app
        self.factory = factory
        self.clock = clock
        self.policy = policy
        self.public_origin = public_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        session: dict[str, Any] = scope["session"]
        token = session_token(session)
        user = None
        if token:
            user = await run_in_threadpool(_load_user, self.factory, token, self.clock.now(), self.policy)
            if user is None:
                session.clear()  # ended: signed out, expired, password or role changed, account disabled
        scope.setdefault("state", {})["user"] = user
        if path.startswith(PROTECTED_PREFIXES):
            if user is None:
                await self._refuse_anonymous(scope, receive, send, method, path)
                return
            if path.startswith(ORGANISER_PREFIXES) and not user.is_organiser:
                await PlainTextResponse("Forbidden: organisers only.", status_code=403)(scope, receive, send)
                return
        if method not in SAFE_METHODS and not path.startswith(TOKEN_PREFIXES):
            body = await _read_body(receive, MAX_UPLOAD_BYTES if path in UPLOAD_PATHS else MAX_FORM_BYTES)
            if body is None:
                await PlainTextResponse("Request too large.", status_code=413)(scope, receive, send)
                return
            problem = self._csrf_problem(scope, session, body, self.public_origin)
            if problem is not None:
                await PlainTextResponse(f"Forbidden: {problem}", status_code=403)(scope, receive, send)
                return
            if _form_holds_nul(body, dict(scope["headers"]).get(b"content-type", b"")):
                await PlainTextResponse(
                    "Bad request: a form field holds a NUL character (%00). Remove it and send the form again.",
                    status_code=400,
                )(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _refuse_anonymous(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        response: Response
        if method in SAFE_METHODS:
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        else:
            response = PlainTextResponse("Forbidden: sign in first.", status_code=403)
        await response(scope, receive, send)

    @staticmethod
    def _csrf_problem(scope: Scope, session: dict[str, Any], body: bytes, public: str) -> str | None:
        """Why an unsafe request is refused as a possible cross-site forgery, or None: its Origin is another
        site's, or the session's CSRF token is missing from it or differs."""
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        origin = headers.get("origin", "")
        if origin and origin != "null" and not _same_origin(scope, origin, public):
            shown = origin if len(origin) <= 100 else origin[:100] + "..."
            return (
                f"this form was sent from another site ({shown}), not from {public}. Open the page on {public}"
                " and send the form from there."
            )
        expected = session.get("csrf")
        given = headers.get("x-csrf-token") or _form_token(body, headers.get("content-type", ""))
        if (
            not isinstance(expected, str)
            or not expected
            or not hmac.compare_digest(given.encode(), expected.encode())
        ):
            return (
                "the form's security token is missing or out of date. Go back, reload the page and try again."
            )
        return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """A ``receive`` giving the already read body once, then waiting on the real one (for disconnects)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


__all__ = [
    "CSRF_FIELD",
    "CurrentUser",
    "GuardMiddleware",
    "csrf_token",
    "session_token",
    "sign_in",
]
