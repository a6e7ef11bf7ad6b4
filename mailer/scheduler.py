"""The running service: APScheduler 3 (asyncio) wakes the tick; the database decides what to do.

Jobs: one ``date`` job per moment of the plan still ahead (:func:`mailer.timeline.plan.plan_moments`: step
times and the materialising of recipient-local steps), plus an ``interval`` job every
``delivery.poll_interval`` for retries, late registrants and organiser-queued waves. Both run the same
idempotent tick, with ``max_instances=1`` and ``coalesce=True``; a duplicate wake-up finds nothing to do.
With ``[bounces.imap]`` set, one more ``interval`` job reads the bounce mailbox in a thread
(mailer.delivery.mailbox); a failed poll is logged and tried again at the next interval.
SIGTERM/SIGINT stop new batches; in-flight messages finish and are recorded before the process exits.
Companions (e.g. the web pages, wired in by ``schedule.py``) run in the same event loop and stop with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from mailer.app import App
from mailer.delivery.handling import policy_for
from mailer.delivery.mailbox import poll_mailbox
from mailer.delivery.transport import SmtpRouter, Transport
from mailer.service import Service, smtp_target
from mailer.store.outbox import QueueResult
from mailer.timeline.clock import SystemClock
from mailer.timeline.plan import plan_moments

log = logging.getLogger(__name__)

Stop = Callable[[], Awaitable[object]]
Companion = Callable[[App, Callable[[str], None]], Awaitable[Stop]]
"""Started with (app, say) once the scheduler runs; returns the async ``stop()`` called when the service stops."""


def wave_line(result: QueueResult) -> str:
    """The line the service prints for a wave it materialised: the messages that will be sent, then those
    logged as skipped on arrival (past the step's deadline), never counting one message twice: 71 messages
    added, all too late, read "wave 21 latin-america-2022/reminder-1w: 0 queued, 71 skipped (too late)".
    """
    wave = result.wave
    line = f"wave {wave.id} {wave.session_id}/{wave.step}: {result.added - result.skipped} queued"
    return line + (f", {result.skipped} skipped (too late)" if result.skipped else "")


class Runner:
    """Owns the scheduler, the SMTP pool and the stop flag for one service process."""

    def __init__(
        self, app: App, pool: Transport, say: Callable[[str], None], stop: asyncio.Event | None = None
    ) -> None:
        self.service = Service(app, SystemClock())
        self.pool = pool
        self.say = say
        self.stop = stop or asyncio.Event()
        self._lock = asyncio.Lock()

    async def finished(self) -> None:
        """Return once no tick is running (ticks started after ``stop`` return at once)."""
        async with self._lock:
            pass

    async def tick(self) -> None:
        """Materialise due steps, then send until nothing is due or a stop is requested (a tick that waited
        for the one before it and finds the stop set does nothing)."""
        if self.stop.is_set():
            return
        async with self._lock:
            if self.stop.is_set():
                return
            for result in self.service.materialise():
                if result.added:
                    self.say(wave_line(result))
            report = await self.service.dispatch(self.pool, stop=self.stop)
            for (session_id, step, status), count in sorted(report.counts.items()):
                self.say(f"{session_id}/{step}: {count} {status}")

    async def poll_bounces(self) -> None:
        """Read the bounce mailbox once, in a thread (imaplib blocks), never during a tick; a failed poll is
        logged, never fatal: what it did not apply stays in the mailbox for the next one."""
        if self.stop.is_set():
            return
        app = self.service.app
        imap = app.settings.bounces.imap
        if imap is None:
            return
        try:
            async with self._lock:  # one writer at a time: SQLite refuses a second one mid-transaction
                if self.stop.is_set():
                    return
                tally = await asyncio.to_thread(
                    poll_mailbox, imap, app.factory, SystemClock().now, policy=policy_for(app.settings)
                )
        except (OSError, imaplib.IMAP4.error, SQLAlchemyError) as exc:
            log.warning("bounce mailbox %s: %s", imap.source, exc)
            self.say(f"bounce mailbox {imap.source}: not read ({exc})")
            return
        if tally.read:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(tally.kinds.items()))
            self.say(
                f"bounce mailbox: {tally.read} read ({kinds}), {len(tally.suppressed)} suppressed"
                + (f", {len(tally.unparsed)} kept unparsed" if tally.unparsed else "")
            )


def _every(
    scheduler: AsyncIOScheduler, interval: timedelta, job: Callable[[], Any], name: str, now: datetime
) -> None:
    """Run ``job`` now and then every ``interval``: one run at a time, missed runs coalesced into one."""
    scheduler.add_job(
        job,
        IntervalTrigger(seconds=interval.total_seconds()),
        id=name,
        max_instances=1,
        coalesce=True,
        next_run_time=now,
    )


async def serve(
    app: App,
    say: Callable[[str], None] = print,
    companions: Sequence[Companion] = (),
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Run until SIGTERM or SIGINT; returns after in-flight messages are recorded and SMTP connections closed.

    Each of ``companions`` is started in this event loop after the scheduler and stopped, in reverse order,
    after it; a companion that fails to start stops those started before it, and its error propagates.
    ``stopped``: True when a stop was asked for before this call (a signal during start-up); then nothing
    starts and "stopped before starting" is said.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if stopped():
            say("stopped before starting")
            return
        await _serve(app, say, companions, stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve(
    app: App, say: Callable[[str], None], companions: Sequence[Companion], stop: asyncio.Event
) -> None:
    with smtp_target(app.settings, on_start=say) as settings:
        async with SmtpRouter(settings, factory=app.factory) as pool:
            runner = Runner(App(settings, app.engine, app.factory), pool, say, stop)
            scheduler = AsyncIOScheduler(timezone="UTC")
            now = SystemClock().now()
            upcoming = 0
            for moment in plan_moments(settings.series):
                if moment > now:
                    scheduler.add_job(
                        runner.tick,
                        DateTrigger(run_date=moment),
                        id=f"moment-{moment.isoformat()}",
                        max_instances=1,
                        coalesce=True,
                        misfire_grace_time=None,
                    )
                    upcoming += 1
            _every(scheduler, settings.poll_interval, runner.tick, "poll", now)
            imap = settings.bounces.imap
            if imap is not None:
                _every(scheduler, imap.interval, runner.poll_bounces, "bounces", now)
            scheduler.start()
            async with contextlib.AsyncExitStack() as running:  # stopped in reverse, after the scheduler
                for start in companions:
                    running.push_async_callback(await start(runner.service.app, say))
                say(f"service started: {upcoming} plan moments ahead, polling every {settings.poll_interval}")
                if imap is not None:
                    say(f"bounce mailbox {imap.source}: read every {imap.interval}")
                await runner.stop.wait()
                say("stopping: finishing in-flight messages")
                # Wait for a running tick to record its batch *before* the scheduler shuts down:
                # APScheduler cancels the coroutine jobs still running at shutdown.
                await runner.finished()
                scheduler.shutdown(wait=False)
    say("stopped")
