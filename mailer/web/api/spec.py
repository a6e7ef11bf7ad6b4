"""The JSON API's endpoints, declared once: route, authorisation, validation and the OpenAPI document.

Each endpoint is a function taking a :class:`Call` and returning a pydantic model, registered with
:func:`endpoint` (method, path, scope, query and body models, response model). From the same
declarations come the Starlette routes and ``/api/v1/openapi.json`` (OpenAPI 3.1; the schemas are
pydantic's JSON Schema), so the document cannot drift from the code.

Every request: ``Authorization: Bearer mlr_...`` (401 otherwise, with ``WWW-Authenticate``), a ``write``
token for unsafe methods (403), query and body validated (422 with ``details``), and errors as
``{"error": ...}``: 404 unknown session, wave, contact; 409 a change the state refuses; never a 500 for
what a client sent. GET endpoints never change anything (besides the token's last use).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailer.errors import ImportFileError, InstantRangeError, NotFoundError
from mailer.store.models import TokenScope
from mailer.store.tokens import TokenInfo, authenticate
from mailer.web.app import WebContext, context_of
from mailer.web.inputs import MAX_ID
from mailer.web.jsonio import ClientError, error_response, parse_json, read_body

PREFIX = "/api/v1"
MAX_BODY = 8 * 1024 * 1024  # an imported file travels in the body
_PATH_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str
    details: list[dict[str, Any]] | None = None


@dataclass
class Call:
    """One request, validated: the context, the token, path parameters and the query and body models."""

    ctx: WebContext
    token: TokenInfo
    path: dict[str, Any]
    query: Any = None
    body: Any = None


@dataclass(frozen=True)
class Endpoint:
    """One API operation (see :func:`endpoint`)."""

    method: str
    path: str  # Starlette path under PREFIX, "{wave_id:int}" for typed parameters
    summary: str
    scope: TokenScope
    handler: Callable[[Call], BaseModel]
    response: type[BaseModel]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = field(default=())

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def documented_statuses(self) -> tuple[int, ...]:
        """Every status this endpoint may answer."""
        implied = [401, 403] if self.scope is TokenScope.WRITE else [401]
        if self.query or self.body or "{" in self.path:
            implied.append(422)
        if self.body:
            implied += [400, 413]
        return tuple(sorted({self.status, *implied, *self.errors}))


ENDPOINTS: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    response: type[BaseModel],
    scope: TokenScope = TokenScope.READ,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
) -> Callable[[Callable[[Call], BaseModel]], Callable[[Call], BaseModel]]:
    """Register the decorated function as ``method path`` (see the module docstring)."""

    def register(handler: Callable[[Call], BaseModel]) -> Callable[[Call], BaseModel]:
        ENDPOINTS.append(
            Endpoint(method, path, summary, scope, handler, response, query, body, status, errors)
        )
        return handler

    return register


def _validation_error(exc: ValidationError, where: str) -> ClientError:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    first = details[0] if details else {"loc": (), "msg": "invalid"}
    location = ".".join(str(part) for part in first["loc"])
    return ClientError(
        422,
        f"{where}{'.' + location if location else ''}: {first['msg']}",
        details=[{"loc": list(d["loc"]), "msg": d["msg"], "type": d["type"]} for d in details],
    )


async def _token(request: Request, ctx: WebContext) -> TokenInfo:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise ClientError(401, "send Authorization: Bearer <token> (mailer api-tokens create)", _CHALLENGE)

    def check() -> TokenInfo | None:
        with ctx.db() as db:
            return authenticate(db, credential.strip(), ctx.now())

    info = await run_in_threadpool(check)
    if info is None:
        raise ClientError(401, "unknown or revoked token", _CHALLENGE)
    return info


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mailer"'}


def _handler(spec: Endpoint) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        ctx = context_of(request)
        try:
            token = await _token(request, ctx)
            if spec.scope is TokenScope.WRITE and token.scope is not TokenScope.WRITE:
                raise ClientError(403, "this token is read-only: this operation needs a write token")
            call = Call(ctx, token, _path_ids(request))
            if spec.query is not None:
                try:
                    call.query = spec.query.model_validate(dict(request.query_params))
                except ValidationError as exc:
                    raise _validation_error(exc, "query") from None
            if spec.body is not None:
                raw = parse_json(await read_body(request, MAX_BODY))
                try:
                    call.body = spec.body.model_validate(raw)
                except ValidationError as exc:
                    raise _validation_error(exc, "body") from None
            try:
                result = await run_in_threadpool(spec.handler, call)
            except NotFoundError as exc:
                raise ClientError(404, str(exc.args[0] if exc.args else exc)) from None
            except (ImportFileError, InstantRangeError) as exc:
                raise ClientError(422, str(exc)) from None
            except ValueError as exc:
                raise ClientError(409, str(exc)) from None
        except ClientError as exc:
            return error_response(exc.status, exc.message, exc.headers, exc.details)
        return JSONResponse(result.model_dump(mode="json"), status_code=spec.status)

    handle.__name__ = spec.operation_id
    return handle


def _path_ids(request: Request) -> dict[str, Any]:
    """The path's parameters; an ``{x_id:int}`` outside 1..2^31-1 (no row can have it, no store can hold it)
    is ClientError 404 "no such x", as for an id no row has."""
    params = dict(request.path_params)
    for name, value in params.items():
        if isinstance(value, int) and not 1 <= value <= MAX_ID:
            raise ClientError(404, f"no such {name.removesuffix('_id')} {value}")
    return params


def routes() -> list[Route]:
    """The Starlette routes of every registered endpoint, and the OpenAPI document (no token needed)."""
    by_path: dict[str, list[Endpoint]] = {}
    for spec in ENDPOINTS:
        by_path.setdefault(spec.path, []).append(spec)
    built = [Route(f"{PREFIX}/openapi.json", _openapi_route, methods=["GET"])]
    for path, specs in by_path.items():
        handlers = {spec.method: _handler(spec) for spec in specs}

        async def dispatch(request: Request, handlers: dict[str, Any] = handlers) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)  # type: ignore[no-any-return]

        built.append(Route(PREFIX + path, dispatch, methods=list(handlers)))
    return built


def _openapi_route(request: Request) -> Response:
    return JSONResponse(openapi_document())


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every registered endpoint."""
    models: set[type[BaseModel]] = {ErrorBody}
    for spec in ENDPOINTS:
        models.update(m for m in (spec.response, spec.body) if m is not None)
    keys: list[tuple[type[BaseModel], Any]] = [
        (model, "serialization") for model in sorted(models, key=lambda m: m.__name__)
    ]
    refs, schemas = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for spec in ENDPOINTS:
        parameters: list[dict[str, Any]] = []
        for name, kind in _PATH_PARAM.findall(spec.path):
            parameters.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer" if kind == "int" else "string"},
                }
            )
        if spec.query is not None:
            query_schema = spec.query.model_json_schema()
            required = set(query_schema.get("required", []))
            for name, schema in query_schema.get("properties", {}).items():
                parameters.append(
                    {"name": name, "in": "query", "required": name in required, "schema": schema}
                )
        responses: dict[str, Any] = {
            str(spec.status): {
                "description": spec.response.__doc__.strip().splitlines()[0]
                if spec.response.__doc__
                else "OK",
                "content": {"application/json": {"schema": refs[(spec.response, "serialization")]}},
            }
        }
        for status in spec.documented_statuses:
            if status != spec.status:
                responses[str(status)] = {
                    "description": _STATUS_TEXT.get(status, "Error"),
                    "content": {"application/json": {"schema": refs[(ErrorBody, "serialization")]}},
                }
        operation: dict[str, Any] = {
            "operationId": spec.operation_id,
            "summary": spec.summary,
            "security": [{"bearer": []}],
            "x-scope": spec.scope.value,
            "parameters": parameters,
            "responses": responses,
        }
        if spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(spec.body, "serialization")]}},
            }
        openapi_path = _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", PREFIX + spec.path)
        paths.setdefault(openapi_path, {})[spec.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "webinar-mailer", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_STATUS_TEXT = {
    400: "Not JSON",
    401: "No token, or an unknown or revoked one",
    403: "A read-only token for a write operation",
    404: "Unknown session, wave, list or contact",
    409: "The current state refuses this change",
    413: "Body too large",
    422: "Parameters or body not valid",
}

__all__ = ["ENDPOINTS", "PREFIX", "Call", "Endpoint", "ErrorBody", "endpoint", "openapi_document", "routes"]
