"""The next free sending slot per relay, kept in the store for every process of one PostgreSQL store (the
shared rate limit without Redis: :class:`mailer.delivery.ratelimit.StoreRateLimiter`).

One row per relay (``host:port``) holding the next free slot in seconds since the epoch on the database
server's clock, so the hosts' clocks need not agree. :func:`lock_slot` locks the row (``SELECT ... FOR
UPDATE``) and :func:`set_slot` moves it, in one short transaction: two processes reserving together are
served one after the other.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import RateSlot


def lock_slot(db: DbSession, relay: str) -> tuple[float | None, float]:
    """(``relay``'s next free slot, or None when none was reserved yet; the database's clock now), both in
    seconds since the epoch, the row locked until the transaction ends. PostgreSQL only."""
    db.execute(
        postgresql.insert(RateSlot)
        .values(relay=relay, next_free=0.0)
        .on_conflict_do_nothing(index_elements=[RateSlot.relay])
    )
    next_free = db.scalar(select(RateSlot.next_free).where(RateSlot.relay == relay).with_for_update())
    now = float(db.scalar(text("SELECT extract(epoch FROM clock_timestamp())")) or 0.0)
    return (next_free or None), now


def set_slot(db: DbSession, relay: str, next_free: float) -> None:
    """Store ``relay``'s next free slot (seconds since the epoch, the database's clock); caller commits."""
    row = db.get(RateSlot, relay)
    assert row is not None, "lock_slot first"
    row.next_free = next_free
