"""Staff see the suppression list on the web with each reason and lift one with a POST carrying the CSRF
token; the lift is recorded and logged."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import Contact, ContactStatus, Suppression, SuppressionLift
from mailer.store.outbox import suppress
from mailer.web.server import ThreadedServer
from tests.factories import add_contact
from tests.test_web_support import INVITATION_AT, client, csrf_of, signed_in, signing_secret

__all__ = ["signing_secret"]


def _suppressed(app: App) -> None:
    with transaction(app.factory) as db:
        for email, reason, status in (
            ("gone@example.org", "hard-bounce", ContactStatus.BOUNCED),
            ("annoyed@example.org", "complaint", ContactStatus.UNSUBSCRIBED),
        ):
            add_contact(db, email).status = status
            suppress(db, email, reason, f"5.1.1 test detail for {email}", INVITATION_AT)


def test_staff_list_suppressions_with_reasons_and_lift_one_with_the_csrf_token(
    app: App, web: ThreadedServer, accounts: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    _suppressed(app)
    caplog.set_level(logging.WARNING, logger="mailer.web.suppressions")
    with signed_in(web, accounts["staff"]) as http:
        page = http.get("/staff/suppressions").text
        assert page.count('name="email_key"') == 2
        assert '<span class="status hard-bounce">hard-bounce</span>' in page
        assert "5.1.1 test detail for annoyed@example.org" in page
        only = http.get("/staff/suppressions?reason=complaint").text
        assert "annoyed@example.org" in only and "gone@example.org" not in only
        assert http.get("/staff/suppressions?reason=nonsense").status_code == 404
        forged = http.post("/staff/suppressions/lift", data={"email_key": "gone@example.org", "note": "x"})
        assert forged.status_code == 403
        token = csrf_of(page)
        lifted = http.post(
            "/staff/suppressions/lift",
            data={"email_key": "gone@example.org", "note": "address fixed by IT", "csrf_token": token},
        )
        assert (lifted.status_code, lifted.headers["location"]) == (
            303,
            "/staff/suppressions?lifted=gone%40example.org",
        )
        again = http.post(
            "/staff/suppressions/lift",
            data={"email_key": "gone@example.org", "note": "twice", "csrf_token": token},
        )
        assert again.status_code == 404
        assert "Suppression of gone@example.org lifted" in http.get(lifted.headers["location"]).text
    with transaction(app.factory) as db:
        assert db.get(Suppression, "gone@example.org") is None
        assert db.get(Suppression, "annoyed@example.org") is not None
        lift = db.scalar(select(SuppressionLift))
        assert lift is not None
        assert (lift.email_key, lift.reason, lift.lifted_by, lift.note) == (
            "gone@example.org",
            "hard-bounce",
            "sam",
            "address fixed by IT",
        )
        assert db.scalar(select(Contact.status).where(Contact.email_key == "gone@example.org")) == "active"
    assert [r.getMessage() for r in caplog.records] == [
        "suppression of gone@example.org (hard-bounce) lifted by sam on the dashboard: address fixed by IT"
    ]


def test_anonymous_visitors_cannot_see_or_lift_suppressions(app: App, web: ThreadedServer) -> None:
    _suppressed(app)
    with client(web) as http:
        assert http.get("/staff/suppressions").status_code == 303
        assert (
            http.post("/staff/suppressions/lift", data={"email_key": "gone@example.org"}).status_code == 403
        )
    with transaction(app.factory) as db:
        assert db.get(Suppression, "gone@example.org") is not None
