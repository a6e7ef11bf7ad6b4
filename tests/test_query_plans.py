"""The service loop's recurring queries on the messages table go through an index, never a scan of the table:
the claim and the next-due queries through the pending messages' index, lease reaping through the leased
messages' one; a Message-ID is looked up through its own table's primary key (EXPLAIN on PostgreSQL with
sequential scans made prohibitive, EXPLAIN QUERY PLAN on SQLite)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session as DbSession

from mailer.app import App
from mailer.delivery.attribution import attribute
from mailer.delivery.reports import Report
from mailer.store.engine import transaction
from mailer.store.models import ReportKind
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


def test_a_message_id_is_looked_up_through_its_tables_primary_key(app: App) -> None:
    """A report's Message-ID finds the message through ``message_ids``' primary key, then the message's."""
    report = Report(ReportKind.HARD, message_ids=("<a@example.org>", "<b@example.org>"))
    statements = _statements(app, lambda db: attribute(db, report, None))
    assert len(statements) == 1
    plan = _plan(app, *statements[0])
    reads = (_indexes_reading(plan, "message_ids"), _indexes_reading(plan, "messages"))
    assert reads == ({"primary key"}, {"primary key"}), plan


def _indexes_reading_messages(plan: list[str]) -> set[str]:
    """How the plan reads the messages table: the names of the indexes, "table scan" for a scan of it."""
    return _indexes_reading(plan, "messages")


def _indexes_reading(plan: list[str], table: str) -> set[str]:
    """How the plan reads ``table``: the names of the indexes ("primary key" for its own), "table scan" for a
    scan of it."""
    used: set[str] = set()
    for line in plan:
        if match := re.search(
            rf"(?:SCAN|SEARCH) {table}(?: USING (?:COVERING )?INDEX (\w+)| USING (?:INTEGER )?(PRIMARY KEY))?\b",
            line,
        ):
            used.add(match.group(1) or (match.group(2) or "table scan").lower())  # SQLite
        elif re.search(rf"Seq Scan on {table}\b", line):
            used.add("table scan")
        elif (match := re.search(rf"Index (?:Only )?Scan using (\w+) on {table}\b", line)) or (
            match := re.search(rf"Bitmap Index Scan on (ix_{table}_\w+|{table}_\w+)", line)
        ):
            used.add("primary key" if match.group(1) == f"{table}_pkey" else match.group(1))
    return used
