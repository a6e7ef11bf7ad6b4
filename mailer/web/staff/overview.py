"""The overview (GET /staff/: sessions and waves, counts by status, progress bars)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mailer.store.models import MessageStatus
from mailer.store.queries import CountRow, counts_by_step, counts_by_wave, status_totals
from mailer.store.relays import describe, open_circuits
from mailer.web.app import context_of

STATUSES = [status.value for status in MessageStatus]


def progress(row: CountRow) -> dict[str, Any]:
    """Finished and total messages of a wave or step, and the percentage finished."""
    return {"done": row.done, "total": row.total, "percent": row.percent}


def overview(request: Request) -> Response:
    ctx = context_of(request)
    with ctx.db() as db:
        steps = counts_by_step(db)
        waves = counts_by_wave(db)
        relays = [describe(state) for state in open_circuits(db)]
    by_session: dict[str, list[CountRow]] = defaultdict(list)
    waves_by_session: dict[str, list[CountRow]] = defaultdict(list)
    for row in steps:
        by_session[row.session_id].append(row)
    for row in waves:
        waves_by_session[row.session_id].append(row)
    sessions = []
    for session in ctx.settings.series.sessions:
        totals = status_totals(by_session.get(session.id, []))
        sessions.append(
            {
                "session": session,
                "totals": totals,
                "total": sum(totals.values()),
                "waves": [
                    {"row": row, "progress": progress(row)} for row in waves_by_session.get(session.id, [])
                ],
            }
        )
    return ctx.page(
        request, "staff/overview.html", {"sessions": sessions, "statuses": STATUSES, "relays": relays}
    )
