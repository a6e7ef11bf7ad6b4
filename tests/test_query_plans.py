"""The service loop's recurring queries on the messages table go through an index, never a scan of the table:
the claim and the next-due queries through the pending messages' index, lease reaping through the leased
messages' one (EXPLAIN on PostgreSQL with sequential scans made prohibitive, EXPLAIN QUERY PLAN on SQLite)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session as DbSession

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.outbox import claim_due, has_due, next_due_at, reap_expired_leases

NOW = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def _statements(app: App, call: Callable[[DbSession], object]) -> list[tuple[str, Any]]:
    """The SELECTs on ``messages`` that ``call`` runs, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM messages" in statement:
            seen.append((statement, params))

    event.listen(app.engine, "before_cursor_execute", record)
    try:
        with transaction(app.factory) as db:
            call(db)
    finally:
        event.remove(app.engine, "before_cursor_execute", record)
    return seen


def _plan(app: App, statement: str, params: Any) -> list[str]:
    with app.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            rows = connection.exec_driver_sql("EXPLAIN " + statement, params).all()
            return [row[0] for row in rows]
        return [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]


@pytest.mark.parametrize(
    ("name", "call", "index"),
    [
        (
            "claim",
            lambda app, db: claim_due(
                db, app.settings, NOW, worker="w", limit=500, lease=timedelta(minutes=5)
            ),
            "ix_messages_pending",
        ),
        ("next due", lambda app, db: next_due_at(db, NOW), "ix_messages_pending"),
        ("has due", lambda app, db: has_due(db, NOW), "ix_messages_pending"),
        ("reap", lambda app, db: reap_expired_leases(db, NOW), "ix_messages_leased"),
    ],
)
def test_recurring_queries_use_an_index_on_messages(app: App, name: str, call: Any, index: str) -> None:
    statements = _statements(app, lambda db: call(app, db))
    assert len(statements) == 1, name
    plan = _plan(app, *statements[0])
    assert _indexes_reading_messages(plan) == {index}, plan


def _indexes_reading_messages(plan: list[str]) -> set[str]:
    """How the plan reads the messages table: the names of the indexes, "table scan" for a scan of it."""
    used: set[str] = set()
    for line in plan:
        if match := re.search(r"(?:SCAN|SEARCH) messages(?: USING (?:COVERING )?INDEX (\w+))?", line):
            used.add(match.group(1) or "table scan")  # SQLite
        elif re.search(r"Seq Scan on messages\b", line):
            used.add("table scan")
        elif (match := re.search(r"Index (?:Only )?Scan using (\w+) on messages\b", line)) or (
            match := re.search(r"Bitmap Index Scan on (ix_messages_\w+|messages_\w+)", line)
        ):
            used.add(match.group(1))
    return used
