"""One wave's page (GET /staff/waves/{id}: counts, progress, sends per hour or day)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailer.store.models import Wave, WaveStatus
from mailer.store.queries import counts_by_wave, pending_due, sends_over_time
from mailer.web.app import context_of
from mailer.web.charts import bar_chart
from mailer.web.inputs import row_id
from mailer.web.staff.overview import STATUSES, progress


def wave_page(request: Request) -> Response:
    ctx = context_of(request)
    wave_id = row_id(request, "wave_id")
    now = ctx.now()
    with ctx.db() as db:
        wave = db.get(Wave, wave_id)
        if wave is None:
            raise HTTPException(404, f"no wave {wave_id}")
        rows = counts_by_wave(db, wave_id=wave_id)
        buckets, unit = sends_over_time(db, wave_id=wave_id)
        sending = pending_due(db, wave_id, now)
    row = rows[0]
    try:
        session = ctx.settings.series.session(wave.session_id)
    except KeyError:
        session = None
    chart = bar_chart(buckets, unit, title=f"Messages sent per {unit} (UTC), wave {wave_id}")
    return ctx.page(
        request,
        "staff/wave.html",
        {
            "wave": wave,
            "row": row,
            "progress": progress(row),
            "session": session,
            "chart": chart,
            "unit": unit,
            "sending": sending > 0 and wave.status == WaveStatus.ACTIVE,
            "statuses": STATUSES,
            "state": row.state,
            "can_change": row.state not in (WaveStatus.CANCELLED, "done"),
        },
    )
