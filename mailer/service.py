"""The service's tick: materialise due steps into waves, then dispatch due messages.

Everything here is derived from rows and idempotent (DESIGN invariant 1): a tick run twice, by a duplicate
scheduler job or by a second process, does no harm. The clock is injected (invariant 3).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import prometheus_client
from sqlalchemy import select

from mailer.app import App, outgoing
from mailer.compose.outgoing import notice_extra
from mailer.compose.render import Renderer
from mailer.config import Security, Settings, StepKind
from mailer.delivery.capture import EmlWriter, SmtpServer
from mailer.delivery.forwarding import Lane
from mailer.delivery.replies import Reply, provider_message_id
from mailer.delivery.transport import NotAttempted, Transport
from mailer.delivery.verp import return_path_for
from mailer.errors import PermanentDeliveryError, RenderError
from mailer.metrics import SEND_SECONDS, SMTP_REPLIES, reply_class
from mailer.store.engine import transaction
from mailer.store.handover import HandOver
from mailer.store.leases import LeaseKeeper
from mailer.store.models import MessageStatus, SessionRow
from mailer.store.outbox import (
    ClaimedMessage,
    Outcome,
    QueueResult,
    claim_due,
    next_due_at,
    queue_wave,
    reap_expired_leases,
    release_claims,
    sync_sessions,
)
from mailer.store.recorder import MAX_WAIT, OutcomeRecorder
from mailer.store.relationships import Relationship, Standing, standings
from mailer.timeline.clock import Clock, require_aware
from mailer.timeline.plan import due_steps, next_moment, resolve_step

log = logging.getLogger(__name__)


def default_worker_name() -> str:
    """``host:pid``, recorded on each claimed message."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class DispatchReport:
    """Counts of what one dispatch did, per (session, step, status)."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, session_id: str, step: str, status: str, n: int = 1) -> None:
        self.counts[(session_id, step, status)] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Service:
    """One process's view of the work: ``materialise`` (sync) and ``dispatch`` (async).

    ``batch_size`` messages are claimed at a time; ``record_wait`` is how long (seconds) an outcome may wait
    to be committed with others (:class:`OutcomeRecorder`); None commits a batch's outcomes when it ends
    (a careful message's at once), which ``bench/throughput.py`` uses to measure what recording as replies
    arrive costs."""

    def __init__(
        self,
        app: App,
        clock: Clock,
        *,
        renderer: Renderer | None = None,
        worker: str | None = None,
        batch_size: int = 100,
        record_wait: float | None = MAX_WAIT,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.clock = clock
        self.outgoing = outgoing(app.settings, renderer)
        self.renderer = self.outgoing.renderer
        self.worker = worker or default_worker_name()
        self.batch_size = batch_size
        self.record_wait = record_wait  # seconds an outcome may wait for its group commit; None: batch end
        self._previous_starts: dict[str, datetime | None] = {}
        self._seen_sequences: dict[str, int] = {}  # session -> SEQUENCE after this process's last sync
        self._standings: dict[int, Standing] = {}  # claimed notices: the recipient's relationship, calendar
        # As many deliveries under way as there are connections, so a stop leaves the rest unstarted.
        self._concurrency = max(
            smtp.connections for smtp in (self.settings.smtp, *self.settings.smtp_servers.values())
        )
        self._sequences: dict[str, int] = {}  # session -> iCalendar SEQUENCE, loaded once per batch
        # VERP: each message's envelope sender names it, so its bounce finds it (mailer.delivery.verp).
        # A rehearsal (redirect_all_to) keeps the plain sender: its bounces are not the contacts'.
        self.return_path = None if self.settings.sender.redirect_all_to else return_path_for(self.settings)
        # The metrics' children by label, looked up once (prometheus_client's labels() takes a lock each time)
        self._send_seconds: dict[str, prometheus_client.Histogram] = {}  # step kind -> child
        self._smtp_replies: dict[
            int | None, prometheus_client.Counter
        ] = {}  # reply code -> its class's child

    def materialise(self) -> list[QueueResult]:
        """Queue every automatic step whose time has come (idempotent); returns what each call did."""
        now = self.clock.now()
        series = self.settings.series
        results: list[QueueResult] = []
        with transaction(self.app.factory) as db:
            for change in sync_sessions(db, self.settings, now, seen=self._seen_sequences):
                log.warning(
                    "session %s %s (SEQUENCE %d): %d re-timed, %d skipped, %d notices queued",
                    change.session_id,
                    change.change,
                    change.sequence,
                    change.retimed,
                    change.skipped,
                    change.notices,
                )
        for planned in due_steps(series, now):
            with transaction(self.app.factory) as db:
                results.append(queue_wave(db, self.settings, planned.session, planned.step, now))
        return results

    def next_moment(self, after: datetime) -> datetime | None:
        """The first moment strictly after ``after`` at which this service has something to do
        (:func:`mailer.timeline.plan.next_moment` over the config and the store), or None."""
        after = require_aware(after, "after")
        with transaction(self.app.factory) as db:
            pending = next_due_at(db, after)
        return next_moment(self.settings.series, after, pending)

    async def dispatch(self, pool: Transport, *, stop: asyncio.Event | None = None) -> DispatchReport:
        """Send due messages batch by batch until none is due (or ``stop`` is set between batches).

        Each outcome is committed as soon as its reply arrives, in groups (:class:`OutcomeRecorder`), so a
        crash loses the record of the last group only, never of a batch. A message whose lease expired
        before (``careful``) is sent alone: its outcome is committed before its sender takes the next
        message. While dispatching, a thread renews this worker's leases every third of ``delivery.lease``
        (:class:`LeaseKeeper`), so neither a slow server nor a starved event loop lets another process take
        messages over. Once ``stop`` is set, messages of the batch whose mail transaction has not begun are
        given back (``queued``, no attempt spent), even those waiting on a dead relay, a probe or a rate-limit
        slot (:meth:`~mailer.delivery.pool.SmtpPool.send`); those in their transaction finish and are recorded. If the dispatch is cancelled (Ctrl-C),
        finished messages are recorded and the others given back: one of those may have reached the server
        already and is then sent again, with the same Message-ID.
        """
        report = DispatchReport()
        keeper = LeaseKeeper(self.app.factory, self.clock, worker=self.worker, lease=self.settings.lease)
        recorder = OutcomeRecorder(
            self.app.factory,
            self.settings,
            self.clock,
            worker=self.worker,
            group_size=max(self._concurrency // 2, 1) if self.record_wait is not None else None,
            max_wait=self.record_wait,
        )
        with keeper:
            async with recorder:
                while stop is None or not stop.is_set():
                    claimed, finished = self._claim()
                    for session_id, step, status in finished:
                        report.add(session_id, step, status)
                    if not claimed and not finished:
                        break
                    outcomes: list[Outcome | None] = [None] * len(claimed)
                    try:
                        await self._send_batch(pool, claimed, outcomes, stop, recorder)
                        await recorder.flush()
                    except asyncio.CancelledError:
                        # Ctrl-C or shutdown: keep what is known, give the rest back
                        self._settle(recorder, claimed, outcomes)
                        raise
                    unsent = [
                        message.pk for message, outcome in zip(claimed, outcomes, strict=True) if not outcome
                    ]
                    if unsent:
                        with transaction(self.app.factory) as db:
                            release_claims(db, unsent, self.clock.now(), worker=self.worker)
                    for message, outcome in zip(claimed, outcomes, strict=True):
                        if outcome is not None:
                            report.add(message.session_id, message.step, outcome.status.value)
        return report

    def _claim(self) -> tuple[list[ClaimedMessage], list[tuple[str, str, str]]]:
        """Reap expired leases and claim the next batch; load the sessions' SEQUENCE (calendars), previous
        start (notices) and the claimed notices' recipients' standing once per batch."""
        now = self.clock.now()
        with transaction(self.app.factory) as db:
            reap_expired_leases(db, now)
            claimed, finished = claim_due(
                db, self.settings, now, worker=self.worker, limit=self.batch_size, lease=self.settings.lease
            )
        if claimed:
            with transaction(self.app.factory) as db:
                rows = db.execute(
                    select(SessionRow.id, SessionRow.previous_starts_at, SessionRow.sequence)
                ).all()
                notices = [
                    m.pk
                    for m in claimed
                    if resolve_step(self.settings.series, m.step).kind is StepKind.NOTICE
                ]
                self._standings = standings(db, self.settings.series, notices)
            self._previous_starts = {row.id: row.previous_starts_at for row in rows}
            self._sequences = {row.id: row.sequence for row in rows}
        return claimed, finished

    async def _send_batch(
        self,
        pool: Transport,
        claimed: list[ClaimedMessage],
        outcomes: list[Outcome | None],
        stop: asyncio.Event | None,
        recorder: OutcomeRecorder,
    ) -> None:
        """Deliver ``claimed`` with as many senders as there are connections, each taking the next message
        until none is left or ``stop`` is set; ``outcomes[i]`` is filled in and handed to ``recorder`` as
        message ``i``'s reply arrives. Each sender keeps a connection (its :class:`~mailer.delivery.forwarding.Lane`),
        so a message's content goes out with the next message's commands (RFC 2920 sec. 3.1). A careful
        message goes alone and its sender waits for its commit before taking the next."""
        queue = iter(range(len(claimed)))
        handover = HandOver(
            self.app.factory, self.clock, worker=self.worker, claimed=claimed, window=4 * self._concurrency
        )

        async def settle(index: int, outcome: Outcome) -> None:
            """Note message ``index``'s outcome and hand it to the recorder (a careful one: committed first)."""
            outcomes[index] = outcome
            committed = recorder.add(outcome, urgent=claimed[index].careful)
            if claimed[index].careful:
                await committed

        async def sender() -> None:
            waiting: list[tuple[int, _Sending]] = []  # handed to SMTP, reply not known yet

            def answered() -> Iterator[tuple[int, Outcome]]:
                """The outcomes of the messages whose reply came, each once (those whose content never went
                out have none: they are given back with the rest)."""
                for entry in [entry for entry in waiting if entry[1].reply.done()]:
                    waiting.remove(entry)
                    outcome = self._answered(claimed[entry[0]], entry[1])
                    if outcome is not None:
                        yield entry[0], outcome

            lane = pool.lane(stop)
            try:
                for index in queue:  # shared: each index is taken by one sender
                    if stop is not None and stop.is_set():
                        break
                    message = claimed[index]
                    # Marked before it goes: an expiry counts only if it went. Not marked: another worker
                    # took it over (this worker's lease expired meanwhile), and that worker sends it.
                    if not await handover.before(index):
                        continue
                    try:
                        handed = await self._hand_over(lane, message)
                    except NotAttempted:  # stopped before its transaction began: given back with the rest
                        break
                    if isinstance(handed, Outcome):
                        await settle(index, handed)
                    else:
                        waiting.append((index, handed))
                    for answer in answered():
                        await settle(*answer)
                await lane.close()  # the held message goes out
            except BaseException:  # cancelled: what is known is recorded by the caller, the rest given back
                lane.abort()
                for index, outcome in answered():
                    outcomes[index] = outcome
                raise
            for answer in answered():
                await settle(*answer)

        try:
            await asyncio.gather(*(sender() for _ in range(min(self._concurrency, len(claimed)))))
        finally:
            await handover.close()

    def _settle(
        self, recorder: OutcomeRecorder, claimed: list[ClaimedMessage], outcomes: list[Outcome | None]
    ) -> None:
        """Record the outcomes of finished deliveries now (again, if the recorder did already: recording is
        idempotent) and release the claims of the others (None)."""
        recorder.write_now([outcome for outcome in outcomes if outcome is not None])
        unsent = [message.pk for message, outcome in zip(claimed, outcomes, strict=True) if outcome is None]
        with transaction(self.app.factory) as db:
            release_claims(db, unsent, self.clock.now(), worker=self.worker)

    async def _hand_over(self, lane: Lane, message: ClaimedMessage) -> Outcome | _Sending:
        """Render and build ``message`` and submit it to ``lane``: its outcome when it cannot be built, else
        what is needed to make its outcome once its reply comes (:meth:`_answered`). An unexpected error
        becomes a deferral (logged with its traceback), so one bad message never stops a batch from being
        recorded. Raises :class:`NotAttempted` when the lane's stop was set before the mail transaction
        began."""
        try:
            return await self._submit(lane, message)
        except NotAttempted:
            raise
        except Exception as exc:
            log.exception("unexpected error delivering %s", message.message_id)
            return Outcome(
                message.pk, MessageStatus.DEFERRED, None, f"internal error: {type(exc).__name__}: {exc}"
            )

    async def _submit(self, lane: Lane, message: ClaimedMessage) -> Outcome | _Sending:
        settings = self.settings
        session = settings.series.session(message.session_id)
        step = resolve_step(settings.series, message.step)
        links = self.outgoing.links(message.pk, message.recipient.email)  # signed personal URLs
        standing = self._standings.get(message.pk, Standing(Relationship.REGISTERED, True))
        try:
            rendered = self.outgoing.render(
                step,
                session,
                message.recipient,
                links=links,
                extra=notice_extra(
                    message.step, self._previous_starts.get(message.session_id), standing.relationship
                ),
                sent_at=self.clock.now(),
            )
        except RenderError as exc:
            log.error("render failed for %s: %s", message.message_id, exc)
            return Outcome(message.pk, MessageStatus.FAILED, None, f"render failed: {exc}")
        try:
            built = self.outgoing.build(
                rendered,
                step,
                session,
                message.recipient,
                message_id=message.message_id,
                date=self.clock.now(),
                unsubscribe_url=links["unsubscribe_url"],
                sequence=self._sequences.get(session.id, 0),
                had_calendar=standing.has_calendar,
            )
        except (ValueError, PermanentDeliveryError) as exc:  # an address or header that cannot be written
            return Outcome(message.pk, MessageStatus.FAILED, None, f"cannot build: {exc}", rendered.language)
        redirect = settings.sender.redirect_all_to
        started = time.perf_counter()
        reply = await lane.submit(
            self.return_path.address(message.pk) if self.return_path else settings.sender.address,
            redirect or message.recipient.email,
            built.wire,
            kind=step.kind,
            utf8=built.utf8,
            transparent=True,
            alone=message.careful,
        )
        return _Sending(step.kind, rendered.language, started, reply)

    def _answered(self, message: ClaimedMessage, sending: _Sending) -> Outcome | None:
        """The outcome of a message whose reply came (counted, logged); None when its connection closed
        before its content was written (nothing delivered)."""
        if sending.reply.cancelled():  # its sender was cancelled before its reply came: given back
            return None
        try:
            reply = sending.reply.result()
        except NotAttempted:
            return None
        duration = time.perf_counter() - sending.started
        kind = sending.kind.value
        seconds = self._send_seconds.get(kind)
        if seconds is None:
            seconds = self._send_seconds[kind] = SEND_SECONDS.labels(kind)
        seconds.observe(duration)
        replies = self._smtp_replies.get(reply.code)
        if replies is None:
            replies = self._smtp_replies[reply.code] = SMTP_REPLIES.labels(reply_class(reply.code))
        replies.inc()
        if log.isEnabledFor(logging.INFO):  # the record's fields are made only when it is written
            log.info(
                "%s %s",
                reply.status.value,
                message.message_id,
                extra={
                    "message_id": message.message_id,
                    "wave": message.wave_id,
                    "session": message.session_id,
                    "step": message.step,
                    "status": reply.status.value,
                    "smtp_code": reply.code,
                    "smtp_reply": reply.text,
                    "duration_ms": round(duration * 1000, 1),
                },
            )
        redirect = self.settings.sender.redirect_all_to
        if (
            redirect and reply.status is MessageStatus.BOUNCED
        ):  # the rehearsal address bounced, not the contact
            return Outcome(
                message.pk,
                MessageStatus.FAILED,
                reply.code,
                f"redirect to {redirect}: {reply.text}",
                sending.language,
            )
        provider_id = provider_message_id(reply.text) if reply.status is MessageStatus.SENT else ""
        return Outcome(
            message.pk,
            reply.status,
            reply.code,
            reply.text,
            sending.language,
            reply.retry_at,
            provider_id,
            uncertain=reply.uncertain,
        )


@dataclass(slots=True)
class _Sending:
    """A message handed to SMTP: its step kind, language, when (``time.perf_counter`` seconds) and the
    future of its reply."""

    kind: StepKind
    language: str
    started: float
    reply: asyncio.Future[Reply]


@contextmanager
def smtp_target(settings: Settings, on_start: Callable[[str], None] | None = None) -> Iterator[Settings]:
    """Yield settings that point at a real SMTP server.

    With ``smtp.host`` configured, that server. Without, a local capture server (aiosmtpd on 127.0.0.1)
    writing every message it receives as an ``.eml`` file under ``settings.capture_dir``; it stops on exit.
    """
    if settings.smtp.host:
        yield settings
        return
    with SmtpServer(EmlWriter(settings.capture_dir)) as server:
        if on_start:
            on_start(
                f"capture SMTP server on {server.host}:{server.port}, writing .eml files to {settings.capture_dir}"
            )
        smtp = dataclasses.replace(
            settings.smtp, host=server.host, port=server.port, security=Security.NONE, username=""
        )
        yield dataclasses.replace(settings, smtp=smtp)


def wall_time(moment: datetime) -> str:
    """A UTC moment as ``YYYY-MM-DD HH:MM UTC`` for progress lines."""
    moment = require_aware(moment, "moment")
    return moment.strftime("%Y-%m-%d %H:%M UTC")
