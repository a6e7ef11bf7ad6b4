"""JSON in and out for the machine-facing endpoints (the API and the webhooks): bounded bodies, and errors
as ``{"error": "..."}`` with a 4xx status, never a 500 for what a client sent."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from mailer.json_input import JsonInputError, load_json


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


def parse_json(body: bytes) -> Any:
    """``body`` as JSON under :func:`mailer.json_input.load_json`'s rules; :class:`ClientError` 400 naming
    the problem."""
    try:
        return load_json(body)
    except JsonInputError as exc:
        raise ClientError(400, str(exc)) from None


__all__ = ["ClientError", "error_response", "parse_json", "read_body"]
