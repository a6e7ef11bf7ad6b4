"""Read-only queries behind the CLI's and the web pages' views: one function per view, shared by both.

    log       the delivery log: filtered, paged rows with their last event; one message's events
    counts    message counts by status per session and step or per wave, progress, sends over time
    audience  audience sizes along each session's timeline, and what queuing a wave would do

Callers outside the package import from here.
"""

from __future__ import annotations

from mailer.store.queries.audience import (
    TimelineRow,
    WavePlan,
    audience_size,
    plan_wave,
    session_timelines,
)
from mailer.store.queries.counts import (
    STATUS_COLUMNS,
    UNFINISHED_STATUSES,
    Bucket,
    CountRow,
    SentSpan,
    counts_by_step,
    counts_by_wave,
    pending_due,
    sends_over_time,
    sent_spans,
    status_totals,
    used_statuses,
)
from mailer.store.queries.log import (
    PAGE_SIZE,
    LogEntry,
    LogFilter,
    contact_languages,
    log_all,
    log_page,
    log_rows,
    message_events,
)

__all__ = [
    "PAGE_SIZE",
    "STATUS_COLUMNS",
    "UNFINISHED_STATUSES",
    "Bucket",
    "CountRow",
    "LogEntry",
    "LogFilter",
    "SentSpan",
    "TimelineRow",
    "WavePlan",
    "audience_size",
    "contact_languages",
    "counts_by_step",
    "counts_by_wave",
    "log_all",
    "log_page",
    "log_rows",
    "message_events",
    "pending_due",
    "plan_wave",
    "sends_over_time",
    "sent_spans",
    "session_timelines",
    "status_totals",
    "used_statuses",
]
