"""API endpoints over the timeline and the outbox: sessions, waves (queue, pause, resume, cancel), the
delivery log and the report. The CLI's organiser commands, over HTTP."""

from __future__ import annotations

from mailer.errors import NotFoundError
from mailer.store.models import TokenScope, WaveStatus
from mailer.store.outbox import queue_wave, refuse_late_messages, set_wave_status
from mailer.store.queries import LogFilter, counts_by_step, counts_by_wave, session_timelines, status_totals
from mailer.store.queries.log import log_before
from mailer.store.relays import describe, open_circuits
from mailer.timeline.clock import accepted_instant
from mailer.web.api.models import (
    LogEntryOut,
    LogPage,
    LogQuery,
    QueueIn,
    QueueOut,
    ReportOut,
    SessionList,
    SessionOut,
    StepCounts,
    StepOut,
    WaveChangeOut,
    WaveList,
    WaveOut,
    WaveQuery,
)
from mailer.web.api.spec import Call, endpoint
from mailer.web.jsonio import ClientError


def _sessions(call: Call, session_id: str | None = None) -> list[SessionOut]:
    series = call.ctx.settings.series
    with call.ctx.db() as db:
        timelines = session_timelines(db, series, call.ctx.now(), session_id)
    sessions = []
    for session in series.sessions:
        if session.id not in timelines:
            continue
        steps = [
            StepOut(
                step=row.step.name,
                kind=row.step.kind.value,
                audience=row.audience,
                at=row.at,
                deadline=row.deadline.at,
                deadline_reason=row.deadline.reason.value,
                recipients=row.size,
                auto=row.step.auto,
            )
            for row in timelines[session.id]
        ]
        sessions.append(
            SessionOut(
                id=session.id,
                region=session.region,
                start=session.start,
                zone=session.zone_name,
                cancelled=session.cancelled,
                timeline=steps,
            )
        )
    return sessions


@endpoint("GET", "/sessions", summary="Every session and its timeline", response=SessionList)
def list_sessions(call: Call) -> SessionList:
    return SessionList(sessions=_sessions(call))


@endpoint(
    "GET",
    "/sessions/{session_id}",
    summary="One session and its timeline",
    response=SessionOut,
    errors=(404,),
)
def get_session(call: Call) -> SessionOut:
    session_id = call.path["session_id"]
    found = _sessions(call, session_id)
    if not found:
        raise NotFoundError(f"no session {session_id!r}")
    return found[0]


def _wave_out(row: object) -> WaveOut:
    return WaveOut(
        id=row.wave_id,  # type: ignore[attr-defined]
        session=row.session_id,  # type: ignore[attr-defined]
        step=row.step,  # type: ignore[attr-defined]
        audience=row.audience,  # type: ignore[attr-defined]
        status=str(row.wave_status),  # type: ignore[attr-defined]
        counts=row.counts,  # type: ignore[attr-defined]
        total=row.total,  # type: ignore[attr-defined]
    )


@endpoint("GET", "/waves", summary="Waves with message counts by status", response=WaveList, query=WaveQuery)
def list_waves(call: Call) -> WaveList:
    with call.ctx.db() as db:
        rows = counts_by_wave(db, call.query.session or None)
    return WaveList(waves=[_wave_out(row) for row in rows])


@endpoint(
    "POST",
    "/waves",
    summary="Queue a step of a session for a list (idempotent)",
    response=QueueOut,
    body=QueueIn,
    scope=TokenScope.WRITE,
    status=201,
    errors=(404,),
)
def queue(call: Call) -> QueueOut:
    settings = call.ctx.settings
    request: QueueIn = call.body
    try:
        session = settings.series.session(request.session)
        step = settings.series.step(request.step)
        if request.list is not None:
            settings.region(request.list)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None
    if request.at is not None and request.at.tzinfo is None:
        raise ClientError(422, "at: give an offset, e.g. 2021-06-01T09:00-03:00")
    if request.at is not None:
        accepted_instant(request.at, f"at {request.at.isoformat()}")
    now = call.ctx.now()
    with call.ctx.db() as db:
        call.ctx.sync_sessions(db, now)
        result = queue_wave(
            db,
            settings,
            session,
            step,
            now,
            audience=request.list,
            at=request.at,
            created_by=f"api:{call.token.name}",
        )
        if not request.queue_late:  # 409, and the queuing is rolled back
            refuse_late_messages(result, session, step, how_to_confirm='send "queue_late": true')
        return QueueOut(
            wave=result.wave.id,
            created=result.created,
            added=result.added,
            skipped=result.skipped,
            scheduled_at=result.wave.scheduled_at,
            deadline=result.deadline,
        )


def _change(call: Call, status: WaveStatus) -> WaveChangeOut:
    with call.ctx.db() as db:
        wave, touched = set_wave_status(db, call.path["wave_id"], status, call.ctx.now())
        return WaveChangeOut(wave=wave.id, status=str(wave.status), touched=touched)


_STEER = {"response": WaveChangeOut, "scope": TokenScope.WRITE, "errors": (404, 409)}


@endpoint("POST", "/waves/{wave_id:int}/pause", summary="Hold a wave's pending messages", **_STEER)  # type: ignore[arg-type]
def pause_wave(call: Call) -> WaveChangeOut:
    return _change(call, WaveStatus.PAUSED)


@endpoint("POST", "/waves/{wave_id:int}/resume", summary="Let a paused wave's messages go again", **_STEER)  # type: ignore[arg-type]
def resume_wave(call: Call) -> WaveChangeOut:
    return _change(call, WaveStatus.ACTIVE)


@endpoint("POST", "/waves/{wave_id:int}/cancel", summary="Cancel a wave: pending messages skipped", **_STEER)  # type: ignore[arg-type]
def cancel_wave(call: Call) -> WaveChangeOut:
    return _change(call, WaveStatus.CANCELLED)


@endpoint(
    "GET",
    "/log",
    summary="The delivery log, newest first (the dashboard's filters)",
    response=LogPage,
    query=LogQuery,
)
def delivery_log(call: Call) -> LogPage:
    query: LogQuery = call.query
    filters = LogFilter(**query.model_dump(exclude={"cursor", "limit"}))
    with call.ctx.db() as db:
        entries = log_before(db, call.ctx.settings.series, filters, query.cursor, query.limit + 1)
    more = len(entries) > query.limit
    entries = entries[: query.limit]
    items = [
        LogEntryOut(
            id=e.pk,
            recipient=e.recipient,
            session=e.session_id,
            step=e.step,
            language=e.language or e.contact_language,
            status=str(e.status),
            attempts=e.attempts,
            reply_code=e.reply_code,
            reply_text=e.reply_text,
            due_at=e.due_at,
            sent_at=e.sent_at,
            updated_at=e.updated_at,
            last_event=e.detail,
        )
        for e in entries
    ]
    return LogPage(items=items, next_cursor=entries[-1].pk if more and entries else None)


@endpoint("GET", "/report", summary="Counts per session and step by status; relays down", response=ReportOut)
def report(call: Call) -> ReportOut:
    with call.ctx.db() as db:
        rows = counts_by_step(db)
        down = [describe(state) for state in open_circuits(db)]
    return ReportOut(
        steps=[StepCounts(session=r.session_id, step=r.step, counts=r.counts, total=r.total) for r in rows],
        totals=status_totals(rows),
        relays_down=down,
    )
