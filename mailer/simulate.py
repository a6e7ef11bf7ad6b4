"""Run the whole timeline in virtual time against a real SMTP server (``mailer simulate``).

The clock jumps from one wake-up to the next: each step's time and each deferred message's retry time,
from before the first step to after the last one. Everything else is the real service: the same
materialise and dispatch code, the same store, real SMTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.app import App
from mailer.delivery.transport import SmtpRouter
from mailer.service import DispatchReport, Service
from mailer.store.engine import transaction
from mailer.store.outbox import next_due_at
from mailer.timeline.clock import VirtualClock, require_aware
from mailer.timeline.plan import plan


@dataclass(frozen=True)
class SimulationTick:
    """What happened at one virtual moment: per (session, step, status) counts."""

    at: datetime
    report: DispatchReport
    steps_done: int
    steps_total: int


def simulation_window(app: App) -> tuple[datetime, datetime]:
    """From one hour before the first step to one day after the last step's deadline (UTC)."""
    planned = plan(app.settings.series)
    start = min(item.at for item in planned) - timedelta(hours=1)
    end = max(item.deadline.at for item in planned) + timedelta(days=1)
    return start, end


async def simulate(
    app: App,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    on_tick: Callable[[SimulationTick], None] | None = None,
) -> DispatchReport:
    """Run the timeline between ``start`` and ``end`` (aware; default :func:`simulation_window`).

    ``app.settings.smtp`` must name a reachable server (see :func:`mailer.service.smtp_target`).
    Returns the totals; ``on_tick`` is called after each virtual moment that did something.
    """
    default_start, default_end = simulation_window(app)
    start = require_aware(start, "start") if start else default_start
    end = require_aware(end, "end") if end else default_end
    clock = VirtualClock(start)
    service = Service(app, clock)
    step_times = sorted({item.at for item in plan(app.settings.series)})
    totals = DispatchReport()
    async with SmtpRouter(app.settings) as pool:
        while True:
            now = clock.now()
            service.materialise()
            report = await service.dispatch(pool)
            totals.counts.update(report.counts)
            done = sum(1 for moment in step_times if moment <= now)
            if on_tick and report.total:
                on_tick(SimulationTick(now, report, done, len(step_times)))
            with transaction(app.factory) as db:
                retry = next_due_at(db, now)
            upcoming = [moment for moment in step_times if moment > now]
            if retry is not None:
                upcoming.append(retry)
            if not upcoming or min(upcoming) > end:
                break
            clock.set(min(upcoming))
    if on_tick:
        on_tick(SimulationTick(clock.now(), DispatchReport(), len(step_times), len(step_times)))
    return totals
