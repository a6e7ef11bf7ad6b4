"""JSON in and out for the machine-facing endpoints (the API and the webhooks): bounded bodies, and errors
as ``{"error": "..."}`` with a 4xx status, never a 500 for what a client sent."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse


class ClientError(Exception):
    """A request this service refuses: ``status`` (4xx) and a message for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.details = details


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """``{"error": message}`` (and ``"details"`` when given) with ``status``."""
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes; :class:`ClientError` 413 when larger, 400 when the client left."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ClientError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ClientError(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientError(400, "the client disconnected before the body was read") from None
    return b"".join(chunks)


MAX_DIGITS = 20  # a JSON integer's digits: any id, count or Unix time fits; Python refuses over 4300


def _integer(text: str) -> int:
    """A JSON integer, at most :data:`MAX_DIGITS` digits (ClientError 400 otherwise)."""
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise ClientError(
            400, f"the body's JSON holds a number of {digits} digits: at most {MAX_DIGITS} are taken"
        )
    return int(text)


def _nul_at(value: Any, where: str) -> str | None:
    """The place of the first string (key or value) holding a NUL character in ``value``, or None."""
    stack = [(value, where)]
    while stack:
        item, place = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return place
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return f"{place}.{key.replace(chr(0), '?')}" if place else key.replace("\x00", "?")
                stack.append((child, f"{place}.{key}" if place else key))
        elif isinstance(item, list):
            stack.extend((child, f"{place}[{index}]") for index, child in enumerate(item))
    return None


def parse_json(body: bytes) -> Any:
    """``body`` as JSON (UTF-8); :class:`ClientError` 400 naming the problem. Refused too, as no store could
    keep them: an integer of more than :data:`MAX_DIGITS` digits, a string holding a NUL character (\\u0000:
    PostgreSQL's text cannot hold it)."""
    try:
        value = json.loads(body.decode("utf-8"), parse_int=_integer)
    except UnicodeDecodeError:
        raise ClientError(400, "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ClientError(
            400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ClientError(400, "the body's JSON is nested too deeply") from None
    place = _nul_at(value, "")
    if place is not None:
        raise ClientError(
            400, f"the body's JSON holds a NUL character (\\u0000) in {place or 'the body'}: remove it"
        )
    return value


__all__ = ["ClientError", "error_response", "parse_json", "read_body"]
