"""The JSON API under ``/api/v1/`` (per-client bearer tokens; OpenAPI at ``/api/v1/openapi.json``).

spec      endpoint declarations -> routes, token and scope checks, validation, the OpenAPI document
models    request and response shapes (pydantic)
outbox    sessions and timelines, waves (queue, pause, resume, cancel), the delivery log, the report
audience  contacts, lists (import a file, add or update one), suppressions, registrations
"""

from __future__ import annotations

from mailer.web.api import audience, outbox
from mailer.web.api.spec import ENDPOINTS, openapi_document, routes

ROUTES = routes()

__all__ = ["ENDPOINTS", "ROUTES", "audience", "openapi_document", "outbox"]
