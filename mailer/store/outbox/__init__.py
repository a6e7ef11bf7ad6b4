"""The outbox: queue waves idempotently, claim due messages, record every state transition.

State machine (DESIGN invariant 5)::

    queued --claim--> sending --2xx--> sent
                         |--4xx / drop--> deferred --(due again)--> sending ...
                         |--5xx on recipient--> bounced (address suppressed)
                         |--other 5xx / deadline passed--> failed
    queued --send-time check--> skipped (reason) | suppressed
    sending --lease expired--> queued (sent alone next time) --lease expired again--> held (staff review)

Every transition is committed together with a row in ``delivery_events``. Uniqueness of
(contact, session, step) is enforced by the database, so queuing twice, from two processes or after a
restart, never makes a second message. Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite
(one sending process) the write lock of the claiming transaction serialises them.

Modules, lower ones first::

    batch         dialect-aware batch statements (INSERT ignoring conflicts, IN as one array)
    events        the delivery log (delivery_events rows)
    suppressions  the suppression list
    checks        the send-time checks: why a claimed message must not go now
    waves         wave control: pause, resume, cancel; skipping pending messages
    queue         queuing a wave: audience, due times, deadlines, message rows
    sessions      session changes from the config: re-time or skip, and queue a notice
    claim         claiming due messages with a lease, renewing, releasing, reaping
    outcomes      recording delivery outcomes, retry backoff

Callers outside the package import from here.
"""

from __future__ import annotations

from mailer.store.outbox.claim import (
    HELD_REASON,
    MAX_EXPIRIES,
    ClaimedMessage,
    claim_due,
    has_due,
    mark_handed,
    mark_handed_now,
    next_due_at,
    reap_expired_leases,
    release_claims,
    renew_leases,
    renew_worker_leases,
    still_claimed,
)
from mailer.store.outbox.events import log_event
from mailer.store.outbox.outcomes import Outcome, record_outcomes, record_sent, retry_delay
from mailer.store.outbox.queue import (
    LateMessagesError,
    QueueResult,
    audience_query,
    default_audience,
    message_key,
    queue_wave,
    refuse_late_messages,
)
from mailer.store.outbox.sessions import SessionChange, retime_pending, session_sequences, sync_sessions
from mailer.store.outbox.suppressions import suppress
from mailer.store.outbox.waves import CHANGE_DONE, WaveStateError, set_wave_status

__all__ = [
    "CHANGE_DONE",
    "HELD_REASON",
    "MAX_EXPIRIES",
    "ClaimedMessage",
    "LateMessagesError",
    "Outcome",
    "QueueResult",
    "SessionChange",
    "WaveStateError",
    "audience_query",
    "claim_due",
    "default_audience",
    "has_due",
    "log_event",
    "mark_handed",
    "mark_handed_now",
    "message_key",
    "next_due_at",
    "queue_wave",
    "reap_expired_leases",
    "record_outcomes",
    "record_sent",
    "refuse_late_messages",
    "release_claims",
    "renew_leases",
    "renew_worker_leases",
    "retime_pending",
    "retry_delay",
    "session_sequences",
    "set_wave_status",
    "still_claimed",
    "suppress",
    "sync_sessions",
]
