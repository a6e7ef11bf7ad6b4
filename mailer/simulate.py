"""Run the whole timeline in virtual time against a real SMTP server (``mailer simulate``).

The clock jumps from one moment to the next that the service itself would act on
(:meth:`mailer.service.Service.next_moment`: step times, waves materialised ahead of recipient-local steps,
each message's own due time, send-window openings, retries), from before the first step to after the last one. Everything else is the real service: the same
materialise and dispatch code, the same store, real SMTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.app import App
from mailer.delivery.transport import SmtpRouter
from mailer.service import DispatchReport, Service
from mailer.timeline.clock import VirtualClock, require_aware
from mailer.timeline.plan import plan, plan_moments


@dataclass(frozen=True)
class SimulationTick:
    """What happened at one virtual moment: per (session, step, status) counts."""

    at: datetime
    report: DispatchReport
    steps_done: int
    steps_total: int


def simulation_window(app: App) -> tuple[datetime, datetime]:
    """From one hour before the first moment of the plan (a step, or a wave materialised ahead of a
    recipient-local step) to one day after the last step's deadline (UTC)."""
    planned = plan(app.settings.series)
    start = min(plan_moments(app.settings.series)) - timedelta(hours=1)
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
            upcoming = service.next_moment(now)
            if upcoming is None or upcoming > end:
                break
            clock.set(upcoming)
    if on_tick:
        on_tick(SimulationTick(clock.now(), DispatchReport(), len(step_times), len(step_times)))
    return totals
