"""Delivery through the real Service.dispatch against an aiosmtpd server that injects faults on demand.

After each scenario every message ends sent, deferred-then-sent, bounced or failed with the reason, and
nobody gets two copies. The clock is virtual and jumps past retry times.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from mailer.app import App
from mailer.config import DkimSettings, Security, Settings
from mailer.delivery.pool import SmtpPool
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import DeliveryEvent, Message, Suppression
from mailer.store.outbox import queue_wave
from mailer.store.outbox.outcomes import UNANSWERED_HELD_REASON
from mailer.timeline.clock import VirtualClock
from tests.conftest import RunningServer
from tests.factories import add_contact, dkim_signing, logged, refuse_delivery_events
from tests.smtp_faults import Faults, FaultyHandler, fault_server

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def _app(app: App, server: object, **smtp: object) -> App:
    # 5 s per command: far above a reply's time on a loaded machine, so only the faults below time out.
    changes = {"connections": 4, "timeout": 5.0, "connect_timeout": 5.0, "data_timeout": 5.0, **smtp}
    settings: Settings = app.settings
    smtp_settings = dataclasses.replace(
        settings.smtp,
        host=server.host,
        port=server.port,
        security=Security.NONE,
        username="",
        **changes,  # type: ignore[attr-defined]
    )
    return dataclasses.replace(app, settings=dataclasses.replace(settings, smtp=smtp_settings))


def _queue(app: App, addresses: list[str]) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        for address in addresses:
            add_contact(db, address)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)


def _delivered(
    app: App, people: list[str], faults: Faults, **smtp: object
) -> tuple[App, FaultyHandler, SmtpPool]:
    """Queue an invitation to ``people`` and send until nothing is pending through a server with ``faults``:
    the sending app, the server's handler and the pool used."""
    server, handler = fault_server(faults)
    with server:
        app = _app(app, server, **smtp)
        _queue(app, people)
        _, pool = _send_all(app)
    return app, handler, pool


def _send_all(app: App, **pool_args: object) -> tuple[VirtualClock, SmtpPool]:
    """Dispatch until nothing is pending, moving the virtual clock past each retry time."""
    clock = VirtualClock(INVITATION_AT)
    service = Service(app, clock, batch_size=50)

    async def run() -> SmtpPool:
        async with SmtpPool(app.settings.smtp, **pool_args) as pool:  # type: ignore[arg-type]
            for _ in range(60):
                await service.dispatch(pool)
                with transaction(app.factory) as db:
                    pending = db.scalar(
                        select(func.count())
                        .select_from(Message)
                        .where(Message.status.in_(["queued", "deferred", "sending"]))
                    )
                if not pending:
                    break
                clock.advance(timedelta(minutes=10))
            return pool

    return clock, asyncio.run(run())


def _outcomes(app: App) -> dict[str, tuple[str, str, list[str]]]:
    """address -> (status, reply text, [event kinds])."""
    with transaction(app.factory) as db:
        rows = db.execute(select(Message.id, Message.recipient, Message.status, Message.reply_text)).all()
        events: dict[int, list[str]] = {}
        for pk, kind in db.execute(
            select(DeliveryEvent.message_pk, DeliveryEvent.kind).order_by(DeliveryEvent.id)
        ):
            events.setdefault(pk, []).append(kind)
    return {address: (status, text, events[pk]) for pk, address, status, text in rows}


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_faults_end_sent_deferred_then_sent_or_failed_and_nobody_twice(app: App, pipelining: bool) -> None:
    people = [f"person{i:02d}@example.org" for i in range(40)]
    faults = Faults(
        greeting_421=2,
        rcpt_temporary={people[1]: (451, 2), people[2]: (454, 1), people[3]: (450, 1), people[4]: (452, 1)},
        rcpt_permanent={people[5]: 550},
        drop_in_data={people[6]: 1},
        rcpt_slow={people[7]: (8.0, 1)},  # past the 5 s timeout however loaded the machine
        data_refused={people[8]: (451, 1)},
        pipelining=pipelining,
    )
    app, handler, pool = _delivered(app, people, faults)
    assert (pool.pipelined > 0) == pipelining
    outcomes = _outcomes(app)
    received = handler.received_by()
    assert all(count == 1 for count in received.values()), "nobody gets two copies"
    assert set(received) == set(people) - {people[5]}
    for address in people[1:5] + people[6:9]:
        status, _, events = outcomes[address]
        assert (
            status == "sent" and "deferred" in events and events.index("deferred") < events.index("sent")
        ), address
    status, text, events = outcomes[people[5]]
    assert status == "bounced" and "550" in text and "User unknown" in text
    with transaction(app.factory) as db:
        suppression = db.get(Suppression, people[5])
    assert suppression is not None and suppression.reason == "hard-bounce" and "550" in suppression.detail
    assert "451" in " ".join(_reply_texts(app, people[1]))
    assert any("timed out" in text for text in _reply_texts(app, people[7]))
    assert any("connection lost" in text for text in _reply_texts(app, people[6]))
    assert Counter(status for status, _, _ in outcomes.values()) == {"sent": 39, "bounced": 1}


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_message_accepted_but_unanswered_is_sent_once_more_carefully_then_held(
    app: App, pipelining: bool
) -> None:
    """A relay that keeps a message and closes the connection before its 250 (RFC 1047): the next attempt
    goes carefully, and a second such loss holds the message for review; nobody gets a third copy."""
    once, always, fine = "once@example.org", "always@example.org", "fine@example.org"
    faults = Faults(accepted_unanswered={once: (True, 1), always: (True, 10)}, pipelining=pipelining)
    app, handler, _ = _delivered(app, [once, always, fine], faults)
    assert handler.received_by() == {once: 2, always: 2, fine: 1}
    outcomes = _outcomes(app)
    assert outcomes[fine][0::2] == ("sent", ["queued", "sent"])
    status, text, events = outcomes[once]
    assert (status, events) == ("sent", ["queued", "deferred", "sent"])
    deferral = _reply_texts(app, once)[1]
    assert "after the message's content was sent: it may have been delivered" in deferral, deferral
    status, text, events = outcomes[always]
    assert (status, events) == ("held", ["queued", "deferred", "held"])
    assert text.startswith(UNANSWERED_HELD_REASON), text
    with transaction(app.factory) as db:
        expiries = dict(db.execute(select(Message.recipient, Message.expiries)).all())
    assert expiries == {once: 1, always: 2, fine: 0}


def _reply_texts(app: App, address: str) -> list[str]:
    return logged(app, DeliveryEvent.detail, address)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_connection_dropped_after_message_120_of_300(app: App, pipelining: bool) -> None:
    people = [f"p{i:03d}@example.org" for i in range(300)]
    app, handler, pool = _delivered(
        app, people, Faults(drop_after_message=120, pipelining=pipelining), messages_per_connection=1000
    )
    received = handler.received_by()
    assert set(received) == set(people) and max(received.values()) == 1
    assert pool.connects == app.settings.smtp.connections + 1  # one reconnect, nothing lost
    outcomes = _outcomes(app)
    assert Counter(status for status, _, _ in outcomes.values()) == {"sent": 300}
    # The message the drop hit was retried at once on a new connection: nobody was deferred.
    assert Counter(kind for _, _, events in outcomes.values() for kind in events) == {
        "queued": 300,
        "sent": 300,
    }
    assert handler.quits == app.settings.smtp.connections  # QUIT on every connection at close


def test_connection_reused_up_to_messages_per_connection(app: App) -> None:
    people = [f"p{i:03d}@example.org" for i in range(30)]
    app, handler, pool = _delivered(app, people, Faults(), connections=2, messages_per_connection=5)
    assert len(handler.received_by()) == 30
    # At most 5 per connection; only the last connection of each of the 2 slots may carry fewer.
    carried = sorted(handler.per_connection.values(), reverse=True)
    assert pool.connects == handler.connections == len(carried)
    assert sum(carried) == 30 and carried[0] == 5 and carried[:-2] == [5] * (len(carried) - 2)


def test_one_connection_carries_exactly_messages_per_connection(app: App) -> None:
    people = [f"p{i:03d}@example.org" for i in range(12)]
    app, handler, pool = _delivered(app, people, Faults(), connections=1, messages_per_connection=5)
    assert handler.per_connection == {1: 5, 2: 5, 3: 2}
    assert pool.connects == 3
    assert handler.quits == 3  # QUIT at each limit and at the end


def test_smtputf8_used_when_offered_else_permanent_failure_with_reason(app: App) -> None:
    people = ["josé.núñez@example.org", "plain@example.org", "aicha@assemblée.example"]
    for offered in (True, False):
        server, handler = fault_server(Faults(smtputf8=offered))
        with server:
            this = _app(app, server)
            if offered:
                _queue(this, people)
            else:
                with transaction(this.factory) as db:
                    db.execute(
                        Message.__table__.update().values(status="queued", attempts=0, due_at=INVITATION_AT)
                    )
            _send_all(this)
        outcomes = _outcomes(this)
        by_address = {m.rcpt_tos[0]: m for m in handler.messages}
        assert "plain@example.org" in by_address
        assert "aicha@xn--assemble-h1a.example" in by_address  # IDN domain as A-label, no SMTPUTF8 needed
        assert "SMTPUTF8" not in by_address["plain@example.org"].mail_options
        if offered:
            assert "SMTPUTF8" in by_address["josé.núñez@example.org"].mail_options
            assert outcomes["josé.núñez@example.org"][0] == "sent"
            assert "josé.núñez@example.org" in by_address["josé.núñez@example.org"].data.decode("utf-8")
        else:
            status, text, _ = outcomes["josé.núñez@example.org"]
            assert status == "failed" and "SMTPUTF8" in text


def test_redirect_all_to_sends_every_message_to_the_rehearsal_address(app: App) -> None:
    people = [f"person{i}@example.org" for i in range(5)]
    server, handler = fault_server(Faults())
    with server:
        this = _app(app, server)
        sender = dataclasses.replace(this.settings.sender, redirect_all_to="rehearsal@example.org")
        this = dataclasses.replace(this, settings=dataclasses.replace(this.settings, sender=sender))
        _queue(this, people)
        _send_all(this)
    assert [m.rcpt_tos for m in handler.messages] == [["rehearsal@example.org"]] * 5
    shown = sorted(m.parsed()["To"].addresses[0].addr_spec for m in handler.messages)
    assert shown == sorted(people)  # the message shows whom it was meant for


def test_a_bounce_of_the_rehearsal_address_does_not_suppress_the_contact(app: App) -> None:
    server, _handler = fault_server(Faults(rcpt_permanent={"rehearsal@example.org": 550}))
    with server:
        this = _app(app, server)
        sender = dataclasses.replace(this.settings.sender, redirect_all_to="rehearsal@example.org")
        this = dataclasses.replace(this, settings=dataclasses.replace(this.settings, sender=sender))
        _queue(this, ["someone@example.org"])
        _send_all(this)
    status, text, _ = _outcomes(this)["someone@example.org"]
    assert status == "failed" and "rehearsal@example.org" in text and "550" in text
    with transaction(this.factory) as db:
        assert db.scalar(select(func.count()).select_from(Suppression)) == 0


def test_rate_limit_over_the_wait_defers_without_contacting_the_server(app: App) -> None:
    from mailer.config import RateLimits

    people = [f"p{i}@example.org" for i in range(6)]
    server, handler = fault_server(Faults())
    with server:
        this = _app(app, server, rate=RateLimits(per_hour=4), max_rate_wait=0.0)
        _queue(this, people)
        clock = VirtualClock(INVITATION_AT)
        service = Service(this, clock)

        async def once() -> None:
            async with SmtpPool(this.settings.smtp) as pool:
                await service.dispatch(pool)

        asyncio.run(once())
    outcomes = _outcomes(this)
    assert Counter(status for status, _, _ in outcomes.values()) == {"sent": 4, "deferred": 2}
    assert len(handler.messages) == 4
    assert all(
        "rate limit of 4 per hour" in text for status, text, _ in outcomes.values() if status == "deferred"
    )


def test_signed_messages_arrive_verifiable_with_their_dotted_lines_intact(app: App, tmp_path: Path) -> None:
    """The service sends the transparent form (leading dots doubled) behind a DKIM-Signature; the server
    undoes the dots, so the body hash still verifies."""
    signing, record = dkim_signing(tmp_path)
    server, handler = fault_server(Faults())
    with server:
        app = _app(app, server)
        app = dataclasses.replace(app, settings=dataclasses.replace(app.settings, dkim=signing))
        with transaction(app.factory) as db:  # the greeting wraps before ".dot": a line starting with a dot
            add_contact(db, "ann@example.org", name="x" * 66 + " .dot")
            add_contact(db, "bob@example.org", name="Bob")
        with transaction(app.factory) as db:
            series = app.settings.series
            queue_wave(
                db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT
            )
        _send_all(app)
    received = sorted(message.data for message in handler.messages)
    assert len(received) == 2
    assert re.search(rb"^\.dot,", b"\n".join(received), re.MULTILINE)
    for data in received:
        assert dkim.verify(
            data, dnsfunc=lambda name, timeout=5: record if name == b"s2021._domainkey.example.org." else None
        )


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_refused_data_command_resets_the_transaction_and_the_connection_goes_on(
    app: App, pipelining: bool
) -> None:
    """451 to DATA leaves MAIL and RCPT in force (RFC 5321 sec. 4.1.1.4): RSET, or the next MAIL on the same
    connection would be refused as a nested transaction."""
    people = ["ann@example.org", "bob@example.org", "cy@example.org"]
    app, handler, pool = _delivered(
        app, people, Faults(data_refused={"ann@example.org": (451, 1)}, pipelining=pipelining), connections=1
    )
    assert handler.received_by() == {address: 1 for address in people}
    assert pool.connects == handler.connections == 1
    status, _, events = _outcomes(app)["ann@example.org"]
    assert status == "sent" and events.count("deferred") == 1
    assert any("data: 451" in text for text in _reply_texts(app, "ann@example.org"))


def test_mailer_log_shows_the_dashboards_rows_and_events(app: App) -> None:
    from click.testing import CliRunner

    from mailer.cli import cli
    from mailer.cli.log import log_command

    server, _ = fault_server(Faults(rcpt_permanent={"bob@example.org": 550}))
    with server:
        app = _app(app, server)
        _queue(app, ["ann@example.org", "bob@example.org"])
        _send_all(app)
    if "log" not in cli.commands:
        cli.add_command(log_command)
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(app.settings.config_dir),
            "--database-url",
            app.settings.database_url,
            "log",
            "--address",
            "BOB@",
            "--events",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "Delivery log: 1 of 1 messages" in result.output and "bounced" in result.output
    assert "ann@example.org" not in result.output
    assert "550" in result.output and "(attempt 1 by" in result.output


def test_each_message_goes_out_with_its_own_return_path_and_its_bounce_finds_it(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer.config import BounceSettings
    from mailer.delivery.handling import handle_report, policy_for
    from tests import bounce_fixtures

    monkeypatch.setenv(app.settings.web.secret_env, "a-test-signing-key-of-at-least-32-characters")
    server, handler = fault_server(Faults())
    with server:
        this = _app(app, server)
        bounces = BounceSettings(return_path="bounces@bounce.example.org")
        this = dataclasses.replace(this, settings=dataclasses.replace(this.settings, bounces=bounces))
        _queue(this, ["rosa.alias@example.org", "other@example.org"])
        _send_all(this)
    senders = {m.rcpt_tos[0]: m.mail_from for m in handler.messages}
    assert all(
        re.fullmatch(r"bounces\+[0-9a-z]+-[a-z2-7]{8}@bounce\.example\.org", s) for s in senders.values()
    )
    assert senders["rosa.alias@example.org"] != senders["other@example.org"]
    # The forward target bounces; the report goes to the return path and names only the forward target.
    report = bounce_fixtures.dsn("rosa.personal@mail.example.net", to=senders["rosa.alias@example.org"])
    with transaction(this.factory) as db:
        handled = handle_report(
            db, report, INVITATION_AT + timedelta(days=1), policy=policy_for(this.settings), source="t"
        )
    assert handled.suppressed == "rosa.alias@example.org"
    statuses = {address: outcome[0] for address, outcome in _outcomes(this).items()}
    assert statuses == {"rosa.alias@example.org": "bounced", "other@example.org": "sent"}


def test_a_store_that_refuses_the_outcomes_stops_the_dispatch_with_its_error_never_hangs_it(
    app: App, smtp_server: RunningServer
) -> None:
    """When outcomes cannot be committed (here a trigger refuses every delivery event: a fault of the store,
    not a busy one), dispatch raises that error once its senders stop; before, the outcomes that arrived
    after the failed commit were never settled and dispatch waited for ever. Nothing is lost: the
    messages stay claimed, with their hand-over marks, until their leases expire."""
    app = _app(app, smtp_server)
    _queue(app, [f"person{i}@example.org" for i in range(40)])
    refuse_delivery_events(app)
    service = Service(app, VirtualClock(INVITATION_AT), batch_size=40)

    async def run() -> None:
        async with SmtpPool(app.settings.smtp) as pool:
            await asyncio.wait_for(service.dispatch(pool), timeout=60)

    started = time.monotonic()
    with pytest.raises(Exception, match="events refused"):
        asyncio.run(run())
    # within seconds: a dispatch that hangs is cancelled at 60 s and then raises the same error when it
    # records what it knows, so the error alone does not tell
    assert time.monotonic() - started < 30
    with transaction(app.factory) as db:
        statuses = dict(db.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    assert statuses == {"sending": 40}
