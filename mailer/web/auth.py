"""Staff sign-in: the current user, CSRF tokens, sign-in throttling, and the ASGI guard that enforces them.

Sessions are Starlette's signed cookies (itsdangerous; HttpOnly, SameSite=Lax, Secure when the base URL is
https), holding the user id, a fingerprint of the password hash (a password change signs out everywhere)
and the CSRF token. :class:`GuardMiddleware` runs before every route:

- ``/staff/...`` and ``/organise/...`` refuse anonymous requests (GET: redirect to the sign-in page; any
  other method: 403); ``/organise/...`` also needs the organiser role.
- Every unsafe request (POST, PUT, PATCH, DELETE) outside the participants' signed links must carry the
  session's CSRF token in the form field ``csrf_token`` (or the ``X-CSRF-Token`` header) and, when the
  browser sends an Origin, come from this site; otherwise 403.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.store.engine import transaction
from mailer.store.models import StaffRole, StaffUser
from mailer.web.users import password_fingerprint

PROTECTED_PREFIXES = ("/staff", "/organise")
ORGANISER_PREFIXES = ("/organise",)
# The token is the authorisation: participants' signed links, API bearer tokens, signed webhooks.
TOKEN_PREFIXES = ("/u/", "/rsvp/", "/api/", "/hooks/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 64 * 1024


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


def sign_in(session: dict[str, Any], user: StaffUser) -> None:
    """Start a fresh session for ``user`` (a new CSRF token too: no fixation of a pre-sign-in value)."""
    session.clear()
    session.update(uid=user.id, fp=password_fingerprint(user), csrf=secrets.token_urlsafe(32))


def sign_out(session: dict[str, Any]) -> None:
    session.clear()


class LoginThrottle:
    """At most ``limit`` failed sign-ins per username (and per client address) in ``window`` seconds."""

    def __init__(self, limit: int = 5, window: float = 900.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        self._failures[key] = times
        return times

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(key, now)) >= self.limit for key in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def _load_user(factory: Any, session: dict[str, Any]) -> CurrentUser | None:
    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    with transaction(factory) as db:
        user = db.get(StaffUser, uid)
        if (
            user is None
            or not user.active
            or not hmac.compare_digest(str(session.get("fp", "")), password_fingerprint(user))
        ):
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


def _same_origin(scope: Scope, origin: str) -> bool:
    headers = dict(scope["headers"])
    host = headers.get(b"host", b"").decode("latin-1")
    scheme = scope.get("scheme", "http")
    return origin == f"{scheme}://{host}"


class GuardMiddleware:
    """Pure ASGI middleware: sign-in and role checks on staff paths, CSRF on every unsafe request.

    Must run inside Starlette's SessionMiddleware (it reads ``scope["session"]``).
    """

    def __init__(self, app: ASGIApp, factory: Any) -> None:
        self.app = app
        self.factory = factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        session: dict[str, Any] = scope["session"]
        user = await run_in_threadpool(_load_user, self.factory, session) if "uid" in session else None
        scope.setdefault("state", {})["user"] = user
        if path.startswith(PROTECTED_PREFIXES):
            if user is None:
                if "uid" in session:
                    session.clear()  # stale: deleted, disabled or password changed
                await self._refuse_anonymous(scope, receive, send, method, path)
                return
            if path.startswith(ORGANISER_PREFIXES) and not user.is_organiser:
                await PlainTextResponse("Forbidden: organisers only.", status_code=403)(scope, receive, send)
                return
        if method not in SAFE_METHODS and not path.startswith(TOKEN_PREFIXES):
            body = await _read_body(receive)
            if body is None:
                await PlainTextResponse("Request too large.", status_code=413)(scope, receive, send)
                return
            if not self._csrf_ok(scope, session, body):
                await PlainTextResponse(
                    "Forbidden: the form's security token is missing or out of date. Go back, reload the page "
                    "and try again.",
                    status_code=403,
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
    def _csrf_ok(scope: Scope, session: dict[str, Any], body: bytes) -> bool:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        origin = headers.get("origin", "")
        if origin and origin != "null" and not _same_origin(scope, origin):
            return False
        expected = session.get("csrf")
        if not isinstance(expected, str) or not expected:
            return False
        given = headers.get("x-csrf-token") or _form_token(body, headers.get("content-type", ""))
        return hmac.compare_digest(given.encode(), expected.encode())


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
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
    "LoginThrottle",
    "csrf_token",
    "sign_in",
    "sign_out",
]
