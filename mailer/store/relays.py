"""Relay reachability in the store, shared by every process of the store: what a pool's circuit breaker
found (:mod:`mailer.delivery.circuit`), read back by the other processes' circuits (:func:`load_circuit`), by
``mailer report`` and the staff dashboard. One row per relay (``host:port``): :func:`save_circuit` writes it,
last writer wins; :func:`claim_probe` lets one process at a time probe an open circuit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
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


def load_circuit(db: DbSession, relay: str) -> CircuitState | None:
    """``relay``'s row (``host:port``) as last saved, or None when no process saved one."""
    row = db.get(RelayCircuit, relay, populate_existing=True)
    if row is None:
        return None
    return CircuitState(
        row.relay, row.server, row.open, row.failures, row.since, row.next_probe_at, row.last_error
    )


def claim_probe(db: DbSession, relay: str, now: datetime, until: datetime) -> bool:
    """Take the probe of ``relay``'s open circuit whose probe is due (``next_probe_at`` <= ``now``): moves
    ``next_probe_at`` to ``until`` in one conditional UPDATE, so of several processes claiming together
    exactly one gets True (PostgreSQL re-checks the condition on the row it waited for; SQLite has one
    writer), and the others see the next probe at ``until``, when a claimer that died is replaced. Caller
    commits. Raises NaiveDatetimeError for naive times."""
    now = require_aware(now, "now")
    result = db.execute(
        update(RelayCircuit)
        .where(
            RelayCircuit.relay == relay,
            RelayCircuit.open.is_(True),
            RelayCircuit.next_probe_at <= now,
        )
        .values(next_probe_at=require_aware(until, "until"), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


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
