"""Limits on what a request may carry before any handler sees it, and row ids read from paths.

Every value a page passes to the store fits the store: ids are 1..2^31-1 (PostgreSQL ``integer``), texts
carry no control characters (PostgreSQL refuses NUL in text). Anything else is a 4xx answer, never a 500.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mailer.store.queries.log import MAX_ROW_ID

MAX_ID = MAX_ROW_ID  # the largest value of an SQL ``integer`` primary key
MAX_TARGET_BYTES = 8 * 1024  # path plus query string, as received
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def row_id(request: Request, name: str) -> int:
    """The path parameter ``name`` (an ``{name:int}`` route part) as a row id; HTTPException 404 when it is
    outside 1..MAX_ID (so no store ever sees a number it cannot hold)."""
    value = request.path_params[name]
    if not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise HTTPException(404, f"no such {name}")
    return value


def id_text(text: str) -> int | None:
    """A row id written in ASCII digits (as in a query string), or None when it is not one."""
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


class RequestLimits:
    """Pure ASGI middleware: 414 for an overlong path and query, 400 for control characters in either."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
            query: bytes = scope.get("query_string", b"")
            if len(raw_path) + len(query) > MAX_TARGET_BYTES:
                await PlainTextResponse("414: address too long", status_code=414)(scope, receive, send)
                return
            decoded = scope["path"] + unquote(query.decode("latin-1").replace("+", " "), errors="replace")
            if _CONTROL.search(decoded):
                await PlainTextResponse("400: control characters in the address", status_code=400)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


__all__ = ["MAX_ID", "MAX_TARGET_BYTES", "RequestLimits", "id_text", "row_id"]
