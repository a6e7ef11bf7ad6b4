"""PostgreSQL's merge of a chunk tries plain inserts first and, when one meets a row inserted meanwhile, merges
the chunk again with inserts that skip such rows: the import's outcome is the same either way."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from mailer.app import App
from mailer.audience import contact_store
from mailer.audience.contacts import import_contacts
from mailer.audience.import_log import list_imports
from mailer.store.models import Contact, ListMembership, UTCDateTime
from tests.conftest import CONTACTS_DIR

MANIFEST: dict[str, Any] = json.loads((CONTACTS_DIR / "manifest.json").read_text(encoding="utf-8"))
NOW = datetime(2021, 6, 1, 9, 0, tzinfo=UTC)

#: Another process's insert, as the plain merge meets it: a contact of the chunk's first staged address,
#: inserted by the same statement (so its ``found`` does not see it), which the statement's own insert then
#: clashes with.
_MEANWHILE = (
    "WITH meanwhile AS (INSERT INTO contacts (email, email_key, name, title, institution, country, language,"
    " time_zone, needs_smtputf8, status, created_at, updated_at)"
    " SELECT email, email_key, '', '', '', '', 'en', 'UTC', FALSE, 'active', :now, :now"
    " FROM contact_import_stage ORDER BY line LIMIT 1 RETURNING id),"
)


def test_a_clash_of_the_plain_merge_merges_the_chunk_again(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("the plain merge with its fallback is PostgreSQL's")
    clashing = text(contact_store._MERGE_NEW.text.replace("WITH ", _MEANWHILE + " ", 1)).bindparams(
        bindparam("now", type_=UTCDateTime())
    )
    monkeypatch.setattr(contact_store, "_MERGE_NEW", clashing)
    statements: list[Any] = []
    execute = Session.execute

    def spied(self: Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(statement)
        return execute(self, statement, *args, **kwargs)

    monkeypatch.setattr(Session, "execute", spied)
    name = "africa.csv"
    report = import_contacts(
        app.factory, app.settings, CONTACTS_DIR / name, "africa", NOW, rejects_path=tmp_path / "r.csv"
    )

    chunks = statements.count(clashing)
    assert chunks >= 1
    assert statements.count(contact_store._MERGE_ALL) == chunks  # every chunk merged again
    expected = MANIFEST[name]["expected_contacts"]
    assert (report.new, report.updated, report.unchanged) == (expected, 0, 0)
    assert report.memberships_added == expected
    assert len(report.rejected) == MANIFEST[name]["expected_rejected"]
    with app.factory() as db:
        assert db.scalar(select(func.count()).select_from(Contact)) == expected
        assert db.scalar(select(func.count()).select_from(ListMembership)) == expected
        assert db.scalar(select(func.count()).where(Contact.name == "")) == 0  # nothing of the clash kept
    (recorded,) = list_imports(app.factory)
    assert recorded.changes == 2 * expected  # each contact created and put on the list, journalled once


def test_the_merge_probes_each_found_contacts_memberships_never_the_whole_list(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-importing a file finds every contact: whether each is on this list or another is a probe of the
    memberships' key for that contact, never a scan of the list's memberships (once per chunk, the work of an
    import would grow with the square of the list's size). The plan of each chunk's merge, asked of
    PostgreSQL in the merge's own transaction, reads ``list_memberships`` only by ``contact_id``."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("the one-statement merge is PostgreSQL's")
    path = CONTACTS_DIR / "africa.csv"
    import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r.csv")
    plans: list[list[str]] = []
    execute = Session.execute

    def explained(self: Session, statement: Any, parameters: Any = None, *args: Any, **kwargs: Any) -> Any:
        if statement is contact_store._MERGE_NEW:
            explain = text("EXPLAIN " + statement.text).bindparams(*statement._bindparams.values())
            plans.append([row[0] for row in execute(self, explain, parameters)])
        return execute(self, statement, parameters, *args, **kwargs)

    monkeypatch.setattr(Session, "execute", explained)
    report = import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r2.csv")

    assert report.new == 0 and report.unchanged == MANIFEST["africa.csv"]["expected_contacts"]
    assert plans
    for plan in plans:
        reads = [i for i, line in enumerate(plan) if re.search(r"Scan\b.* on list_memberships\b", line)]
        assert len(reads) == 2, plan  # this list, another list
        for i in reads:
            assert re.search(r"Index (Only )?Scan using list_memberships_pkey", plan[i]), plan
            assert "contact_id = contacts.id" in plan[i + 1], plan
