"""The declarative base and the timestamp type of every table.

Every timestamp column is :class:`UTCDateTime`: aware datetimes in, aware UTC datetimes out, naive refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

from mailer.timeline.clock import require_aware


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC. Binding a naive datetime raises :class:`mailer.errors.NaiveDatetimeError`."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = require_aware(value, "stored timestamp")
        # SQLite has no time zone type: store naive UTC text; PostgreSQL keeps timestamptz.
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}
