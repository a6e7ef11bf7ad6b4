"""Relay reachability in the store: what a pool's circuit breaker found, readable by any process
(``mailer report``, the staff dashboard). Written by :mod:`mailer.delivery.circuit` through
:func:`save_circuit`; one row per relay (``host:port``), last writer wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import RelayCircuit
from mailer.timeline.clock import require_aware


@dataclass(frozen=True)
class CircuitState:
    """One relay's circuit as a pool last saw it; times aware (UTC)."""

    relay: str  # host:port
    server: str  # the SMTP server's configured name
    open: bool
    failures: int  # consecutive failed connections
    since: datetime | None  # when the circuit opened (None while closed)
    next_probe_at: datetime | None
    last_error: str


def save_circuit(db: DbSession, state: CircuitState, now: datetime) -> None:
    """Insert or update ``state.relay``'s row in one statement (``INSERT ... ON CONFLICT DO UPDATE``), so two
    processes saving the same relay at once never collide; caller commits. Raises NaiveDatetimeError for
    naive times."""
    now = require_aware(now, "now")
    values = {
        "relay": state.relay,
        "server": state.server,
        "open": state.open,
        "failures": state.failures,
        "since": state.since,
        "next_probe_at": state.next_probe_at,
        "last_error": state.last_error[:2000],
        "updated_at": require_aware(now, "now"),
    }
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(RelayCircuit).values(values)
    db.execute(
        statement.on_conflict_do_update(
            index_elements=[RelayCircuit.relay],
            set_={key: statement.excluded[key] for key in values if key != "relay"},
        )
    )


def open_circuits(db: DbSession) -> list[CircuitState]:
    """Every relay currently considered unreachable, by relay."""
    rows = db.scalars(select(RelayCircuit).where(RelayCircuit.open.is_(True)).order_by(RelayCircuit.relay))
    return [
        CircuitState(row.relay, row.server, True, row.failures, row.since, row.next_probe_at, row.last_error)
        for row in rows
    ]


def describe(state: CircuitState) -> str:
    """One line for people: "relay 127.0.0.1:2525 unreachable since 12:03:07 UTC, next probe 12:05:00 UTC
    (3 failed connections; last: connect: ConnectionRefusedError ...)"."""
    since = f" since {state.since:%H:%M:%S} UTC" if state.since else ""
    probe = f", next probe {state.next_probe_at:%H:%M:%S} UTC" if state.next_probe_at else ""
    last = f"; last: {state.last_error}" if state.last_error else ""
    return (
        f"relay {state.relay} ({state.server}) unreachable{since}{probe} "
        f"({state.failures} failed connections{last})"
    )
