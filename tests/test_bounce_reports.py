"""Reading every kind of report (mailer.delivery.reports), the signed return path, and applying reports
(mailer.delivery.handling): hand-written fixtures of the field's shapes, and garbage that must do nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mailer.app import App
from mailer.delivery.attribution import Attribution, address_keys, attribute
from mailer.delivery.bounces import handle_batch
from mailer.delivery.handling import Policy, handle_report
from mailer.delivery.reports import Recipient, Report, parse_report
from mailer.delivery.verp import ReturnPath
from mailer.store.engine import transaction
from mailer.store.models import (
    BounceReport,
    Contact,
    DeliveryEvent,
    Message,
    MessageStatus,
    ReportKind,
    Suppression,
)
from mailer.store.outbox import queue_wave
from mailer.store.suppressions import lift_suppression
from tests import bounce_fixtures as fixtures
from tests.factories import add_contact, queue_invitations

NOW = datetime(2021, 6, 10, 12, tzinfo=UTC)
RETURN_PATH = ReturnPath("bounces", "bounce.example.org", b"k" * 32)


@pytest.mark.parametrize(
    ("raw", "kind", "status", "named", "message_ids"),
    [
        (fixtures.dsn("a@example.org"), "hard", "5.1.1", "a@example.org", ()),
        (
            fixtures.dsn("a@example.org", message_id="<m1@example.org>"),
            "hard",
            "5.1.1",
            "a@example.org",
            ("<m1@example.org>",),
        ),
        (
            fixtures.dsn("a@example.org", status="4.2.2", diagnostic="smtp; 452 4.2.2 mailbox full"),
            "soft",
            "4.2.2",
            "a@example.org",
            (),
        ),
        (
            fixtures.dsn("a@example.org", action="delayed", status="4.4.1"),
            "delayed",
            "4.4.1",
            "a@example.org",
            (),
        ),
        (
            fixtures.dsn("a@example.org", action="relayed", status="2.0.0"),
            "other",
            "2.0.0",
            "a@example.org",
            (),
        ),
        (fixtures.dsn("josé@example.org"), "hard", "5.1.1", "josé@example.org", ()),
        (
            fixtures.global_dsn("josé@example.org", message_id="<g@example.org>"),
            "hard",
            "5.1.1",
            "josé@example.org",
            ("<g@example.org>",),
        ),
        (
            fixtures.exchange_ndr("a@example.org", message_id="<x@example.org>"),
            "hard",
            "5.1.1",
            "",
            ("<x@example.org>",),
        ),
        (fixtures.exim_bounce("a@example.org"), "hard", "5.1.1", "a@example.org", ()),
        (
            fixtures.qmail_bounce("a@example.org", message_id="<q@example.org>"),
            "hard",
            "5.1.1",
            "a@example.org",
            ("<q@example.org>",),
        ),
        (
            fixtures.arf(original_rcpt="a@example.org", message_id="<f@example.org>"),
            "complaint",
            "",
            "a@example.org",
            ("<f@example.org>",),
        ),
        (fixtures.out_of_office("a@example.org"), "auto-reply", "", "", ()),
        (fixtures.personal_reply("a@example.org"), "other", "", "", ()),
        (fixtures.NO_FROM_LINE, "unparsed", "", "", ()),
    ],
    ids=[
        "dsn",
        "dsn-returned-headers",
        "soft",
        "delayed",
        "relayed",
        "dsn-utf8-address",
        "global-dsn",
        "exchange",
        "exim",
        "qmail",
        "arf",
        "out-of-office",
        "reply",
        "no-from-line",
    ],
)
def test_each_report_kind_is_read(
    raw: bytes, kind: str, status: str, named: str, message_ids: tuple[str, ...]
) -> None:
    report = parse_report(raw)
    assert report.kind == kind
    assert report.status == status
    assert (report.recipients[0].address if report.recipients else "") == named
    assert report.message_ids == message_ids


def test_the_report_says_what_the_mta_said_and_when() -> None:
    report = parse_report(fixtures.dsn("a@example.org"))
    assert report.reporting_mta == "relay.example.net"
    assert report.arrived_at == datetime(2021, 6, 2, 7, 59, 58, tzinfo=UTC)
    assert report.diagnostic == "smtp; 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown"
    assert report.smtp_code == 550
    assert parse_report(fixtures.arf(original_mail_from="bounces+x@bounce.example.org")).sent_to[0] == (
        "bounces+x@bounce.example.org"
    )


def test_the_return_path_names_one_message_and_cannot_be_forged() -> None:
    address = RETURN_PATH.address(123456)
    assert address == f"bounces+2n9c-{RETURN_PATH.token(123456).split('-')[1]}@bounce.example.org"
    assert len(address.split("@")[0]) <= 22
    assert RETURN_PATH.message_pk(address) == 123456
    assert RETURN_PATH.message_pk(f"<{address.upper()}>") == 123456
    other_key = ReturnPath("bounces", "bounce.example.org", b"o" * 32)
    assert other_key.message_pk(address) is None
    forged = address.replace("2n9c-", "2n9d-")
    assert RETURN_PATH.message_pk(forged) is None
    assert RETURN_PATH.message_pk("bounces@bounce.example.org") is None
    assert RETURN_PATH.message_pk(address.replace("bounce.example.org", "example.net")) is None


def test_address_keys_treat_a_labels_and_u_labels_alike() -> None:
    assert address_keys("Ana@XN--BCHER-KVA.Example.") == ("ana@xn--bcher-kva.example", "ana@bücher.example")
    assert address_keys("ana@bücher.example") == ("ana@bücher.example", "ana@xn--bcher-kva.example")
    assert address_keys("JOSÉ@Example.org") == ("josé@example.org",)
    assert address_keys("no-at-sign") == ()


def test_address_keys_read_the_address_inside_brackets_at_its_last_at_sign() -> None:
    assert address_keys(" <Xena@Example.org> ") == ("xena@example.org",)
    assert address_keys('"a@b"@Bücher.example') == (  # RFC 5321 quoted local part
        '"a@b"@bücher.example',
        '"a@b"@xn--bcher-kva.example',
    )
    assert address_keys("ana@") == () and address_keys("@example.org") == () and address_keys("<>") == ()
    assert address_keys("ana@Example.LuX.") == ("ana@example.lux",)


def test_address_keys_give_both_forms_of_an_internationalised_domain() -> None:
    # UTS 46 maps the domain first (full-width letters, sharp s kept: non-transitional, RFC 5891).
    assert address_keys("ana@\uff45xample.org") == ("ana@\uff45xample.org", "ana@example.org")
    assert address_keys("ana@STRAßE.example") == ("ana@strasse.example", "ana@xn--strae-oqa.example")
    assert address_keys("jose\u0301@bu\u0308cher.example") == (
        "jos\u00e9@b\u00fccher.example",
        "jos\u00e9@xn--bcher-kva.example",
    )
    # A form is looked up even when the other cannot be made (a label over 63 octets cannot be encoded).
    long = "a" * 64
    assert address_keys(f"ana@xn--bcher-kva.{long}") == (f"ana@xn--bcher-kva.{long}", f"ana@bücher.{long}")


def _sent(app: App, *addresses: str) -> dict[str, Message]:
    queue_invitations(app, *addresses)
    with transaction(app.factory) as db:
        messages = list(db.scalars(select(Message)))
        for message in messages:
            message.status, message.sent_at = MessageStatus.SENT, datetime(2021, 6, 1, 13, 5, tzinfo=UTC)
        return {m.recipient: m for m in messages}


def _handle(app: App, raw: bytes, now: datetime = NOW, policy: Policy | None = None) -> str:
    with transaction(app.factory) as db:
        return handle_report(db, raw, now, policy=policy or Policy(RETURN_PATH), source="test").outcome


def _suppressions(app: App) -> dict[str, str]:
    with transaction(app.factory) as db:
        return {s.email_key: s.reason for s in db.scalars(select(Suppression))}


def test_the_return_path_attributes_a_report_that_names_another_address(app: App) -> None:
    messages = _sent(app, "rosa.alias@example.org", "other@example.org")
    to = RETURN_PATH.address(messages["rosa.alias@example.org"].id)
    outcome = _handle(app, fixtures.dsn("rosa.personal@mail.example.net", to=to))
    assert outcome == (
        "hard bounce: rosa.alias@example.org suppressed; not ours, not suppressed: rosa.personal@mail.example.net"
    )
    assert _suppressions(app) == {"rosa.alias@example.org": "hard-bounce"}
    with transaction(app.factory) as db:
        message = db.get(Message, messages["rosa.alias@example.org"].id)
        assert message is not None and message.status == "bounced" and message.reply_code == 550
        assert message.reply_text.startswith("5.1.1 smtp; 550 5.1.1 <rosa.personal@mail.example.net>")
        assert message.reply_text.endswith("(relay.example.net, 2021-06-02 07:59 UTC)")
        assert db.scalar(select(BounceReport.matched_by)) == "verp"


def test_a_complaint_suppresses_at_once(app: App) -> None:
    messages = _sent(app, "ana@example.org")
    rp = RETURN_PATH.address(messages["ana@example.org"].id)
    assert _handle(app, fixtures.arf(original_mail_from=rp)) == "complaint: ana@example.org suppressed"
    assert _suppressions(app) == {"ana@example.org": "complaint"}
    with transaction(app.factory) as db:
        assert db.scalar(select(Contact.status)) == "unsubscribed"
        assert db.scalar(select(Message.status)) == "sent"
        assert db.scalar(select(DeliveryEvent.kind).order_by(DeliveryEvent.id.desc())) == "reported"


def test_delays_auto_replies_and_replies_suppress_nobody(app: App) -> None:
    messages = _sent(app, "ana@example.org")
    mid = messages["ana@example.org"].message_id
    assert _handle(
        app, fixtures.dsn("ana@example.org", action="delayed", status="4.4.1", message_id=mid)
    ) == (
        "delayed for ana@example.org: 4.4.1 smtp; 550 5.1.1 <ana@example.org>: Recipient address rejected: "
        "User unknown (relay.example.net, 2021-06-02 07:59 UTC)"
    )
    assert _handle(app, fixtures.out_of_office("ana@example.org")) == "auto-reply: ignored"
    assert _handle(app, fixtures.personal_reply("ana@example.org")) == "other: ignored"
    assert _suppressions(app) == {}
    with transaction(app.factory) as db:
        assert db.scalar(select(Message.status)) == "sent"
        assert db.scalar(select(func.count(BounceReport.id))) == 3


def test_soft_bounces_suppress_after_the_limit_over_the_period(app: App) -> None:
    messages = _sent(app, "full@example.org")
    mid = messages["full@example.org"].message_id
    policy = Policy(RETURN_PATH, soft_limit=3, soft_period=timedelta(days=7))

    def soft(day: int) -> bytes:
        raw = fixtures.dsn(
            "full@example.org", status="4.2.2", diagnostic="smtp; 452 4.2.2 full", message_id=mid
        )
        return raw.replace(b"Wed,  2 Jun 2021", f"Wed, {day:2d} Jun 2021".encode())

    assert _handle(app, soft(1), policy=policy).startswith("soft bounce for full@example.org")
    assert _handle(app, soft(3), policy=policy).startswith("soft bounce")
    assert _handle(app, soft(5), policy=policy).startswith("soft bounce")  # 3 bounces, only 4 days apart
    assert _suppressions(app) == {}
    assert _handle(app, soft(8), policy=policy).endswith("full@example.org suppressed (soft-bounce)")
    assert _suppressions(app) == {"full@example.org": "soft-bounce"}


def test_soft_bounces_before_staff_lifted_the_suppression_are_not_counted_again(app: App) -> None:
    messages = _sent(app, "full@example.org")
    mid = messages["full@example.org"].message_id
    policy = Policy(RETURN_PATH, soft_limit=3, soft_period=timedelta(days=7))

    def soft(day: str) -> bytes:
        raw = fixtures.dsn(
            "full@example.org", status="4.2.2", diagnostic="smtp; 452 4.2.2 full", message_id=mid
        )
        return raw.replace(b"Wed,  2 Jun 2021", day.encode())

    for day in ("Tue,  1 Jun 2021", "Fri,  4 Jun 2021", "Wed,  9 Jun 2021"):
        _handle(app, soft(day), policy=policy)
    assert _suppressions(app) == {"full@example.org": "soft-bounce"}
    with transaction(app.factory) as db:
        lift_suppression(db, "full@example.org", by="olga", note="mailbox emptied", now=NOW)
    later = NOW + timedelta(days=20)
    assert not _handle(app, soft("Thu,  1 Jul 2021"), later, policy).endswith("suppressed (soft-bounce)")
    assert _handle(app, soft("Fri,  2 Jul 2021"), later, policy).startswith("soft bounce")
    assert _suppressions(app) == {}  # one soft bounce after the lift, then two: not three over seven days
    assert _handle(app, soft("Mon, 12 Jul 2021"), later, policy).endswith("suppressed (soft-bounce)")


def test_the_same_report_twice_is_applied_once(app: App) -> None:
    _sent(app, "gone@example.org")
    raw = fixtures.dsn("gone@example.org")
    assert _handle(app, raw) == "hard bounce: gone@example.org suppressed"
    assert _handle(app, raw) == "already handled on 2021-06-10"
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count(BounceReport.id))) == 1
        assert db.scalar(select(func.count(DeliveryEvent.id)).where(DeliveryEvent.kind == "bounced")) == 1


_SHAPES = [
    fixtures.dsn("gone@example.org"),
    fixtures.global_dsn("josé@example.org"),
    fixtures.exim_bounce("gone@example.org"),
    fixtures.qmail_bounce("gone@example.org", message_id="<q@example.org>"),
    fixtures.arf(original_rcpt="gone@example.org"),
]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=4000))
def test_garbage_never_raises(raw: bytes) -> None:
    assert parse_report(raw).kind in set(ReportKind)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(_SHAPES), st.data())
def test_truncated_reports_never_raise_nor_report_a_failure(shape: bytes, data: st.DataObject) -> None:
    # Cut before the first field that says what happened (Action, "permanent error", Feedback-Type).
    cut = min(
        shape.find(marker)
        for marker in (b"Action:", b"permanent", b"Feedback-Type", b"Delivery to")
        if shape.find(marker) >= 0
    )
    report = parse_report(shape[: data.draw(st.integers(0, cut))])
    assert report.kind in (ReportKind.OTHER, ReportKind.AUTO_REPLY, ReportKind.UNPARSED)


def test_a_huge_report_is_read_without_raising() -> None:
    junk = b"Subject: x\n\n" + b"5.1.1 gone@example.org \xff\xfe\n" * 200_000
    assert parse_report(junk).kind == "other"
    huge_dsn = fixtures.dsn("gone@example.org").replace(
        b"--b1--", b"--b1\n\n" + b"x" * 3_000_000 + b"\n--b1--"
    )
    assert parse_report(huge_dsn).status == "5.1.1"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.sampled_from(_SHAPES).flatmap(
            lambda s: st.integers(0, s.find(b"Action:") if b"Action:" in s else 40).map(lambda n: s[:n])
        ),
    )
)
def test_garbage_and_truncated_reports_suppress_nobody(app: App, raw: bytes) -> None:
    with transaction(app.factory) as db:
        if db.scalar(select(func.count(Contact.id))) == 0:
            add_contact(db, "gone@example.org")
            add_contact(db, "josé@example.org")
    _handle(app, raw)
    assert _suppressions(app) == {}


def _attribute(app: App, report: Report) -> tuple[str | None, str, tuple[str, ...]]:
    """(recipient of the message found, matched_by, strangers) of ``report``."""
    with transaction(app.factory) as db:
        found: Attribution = attribute(db, report, RETURN_PATH)
        assert (found.contact is None) == (found.message is None)
        return (found.message.recipient if found.message else None), found.matched_by, found.strangers


def test_a_report_is_matched_by_return_path_then_message_id_then_provider_id(app: App) -> None:
    messages = _sent(app, "ana@example.org", "ben@example.org", "cy@example.org")
    with transaction(app.factory) as db:
        for address, provider_id in (("ana@example.org", "p-ana"), ("ben@example.org", "p-ben")):
            message = db.get(Message, messages[address].id)
            assert message is not None
            message.provider_id = provider_id
    ana_id, cy_path = (
        messages["ana@example.org"].message_id,
        RETURN_PATH.address(messages["cy@example.org"].id),
    )
    hard = ReportKind.HARD
    assert _attribute(
        app,
        Report(hard, sent_to=("other@example.net", cy_path), message_ids=(ana_id,), provider_ids=("p-ben",)),
    ) == ("cy@example.org", "verp", ())
    assert _attribute(app, Report(hard, message_ids=(ana_id,), provider_ids=("p-ben",))) == (
        "ana@example.org",
        "message-id",
        (),
    )
    assert _attribute(app, Report(hard, message_ids=("<x@example.org>",), provider_ids=("p-ben",))) == (
        "ben@example.org",
        "provider-id",
        (),
    )
    with transaction(app.factory) as db:  # two messages with one provider id each, asked for in reverse
        for address, provider_id in (("ana@example.org", "p-2"), ("ben@example.org", "p-1")):
            message = db.get(Message, messages[address].id)
            assert message is not None
            message.provider_id = provider_id
    assert _attribute(app, Report(hard, provider_ids=("p-2", "p-1")))[:2] == (
        "ana@example.org",
        "provider-id",
    )
    named = (Recipient("Ben@Example.org"), Recipient("nobody@example.net", original="ben@example.org"))
    assert _attribute(app, Report(hard, recipients=named, provider_ids=("p-none",))) == (
        "ben@example.org",
        "address",
        ("nobody@example.net",),
    )


def test_a_report_naming_nothing_of_ours_is_matched_to_nothing(app: App) -> None:
    _sent(app, "ana@example.org")
    stranger = (Recipient("nobody@example.net"),)
    hard = ReportKind.HARD
    assert _attribute(app, Report(hard)) == (None, "", ())
    assert _attribute(app, Report(hard, recipients=stranger, message_ids=("<x@example.org>",))) == (
        None,
        "",
        ("nobody@example.net",),
    )
    assert _attribute(app, Report(hard, provider_ids=("p-none",))) == (None, "", ())


def test_a_report_naming_only_an_address_is_about_the_latest_message_sent_to_it(app: App) -> None:
    series = app.settings.series
    first = _sent(app, "ana@example.org")["ana@example.org"]
    with transaction(app.factory) as db:  # a later step's message, sent earlier (ids do not say when)
        queue_wave(
            db,
            app.settings,
            series.session("africa-2021"),
            series.step("invitation-2"),
            datetime(2021, 6, 22, 13, tzinfo=UTC),
        )
    with transaction(app.factory) as db:
        later = db.scalars(select(Message).where(Message.id != first.id)).one()
        later.status, later.sent_at = MessageStatus.SENT, datetime(2021, 5, 1, tzinfo=UTC)
    report = Report(ReportKind.HARD, recipients=(Recipient("ana@example.org"),))
    with transaction(app.factory) as db:
        found = attribute(db, report, None)
        assert (found.message.id if found.message else None, found.matched_by) == (first.id, "address")
    with transaction(app.factory) as db:  # sent at the same moment: the later message
        later = db.scalars(select(Message).where(Message.id != first.id)).one()
        later.sent_at = datetime(2021, 6, 1, 13, 5, tzinfo=UTC)
    with transaction(app.factory) as db:
        found = attribute(db, report, None)
        assert found.message is not None and found.message.id == later.id


def test_a_report_naming_a_contact_never_sent_anything_names_no_message(app: App) -> None:
    _sent(app, "ana@example.org")
    queue_invitations(app, "ben@example.org")  # queued, not sent
    with transaction(app.factory) as db:
        found = attribute(db, Report(ReportKind.HARD, recipients=(Recipient("ben@example.org"),)), None)
        assert found.message is None and found.contact is not None
        assert (found.contact.email, found.matched_by) == ("ben@example.org", "address")


def _two_recipients(first: str, second: str) -> bytes:
    """A DSN naming two recipients (a list expansion, a forwarding server's batch): ``first`` and ``second``
    are their field blocks."""
    head = fixtures.dsn("unused@example.net").split(b"Final-Recipient:")[0].decode()
    return f"{head}{first}\n{second}\n--b1--\n".encode()


def test_an_address_only_report_is_about_the_original_recipient_not_where_it_was_forwarded(app: App) -> None:
    # Alice's mail is forwarded to Bob, who is on the list too: the report names Alice as Original-Recipient.
    _sent(app, "alice@example.org", "bob@example.org")
    outcome = _handle(app, fixtures.dsn("bob@example.org", original_recipient="alice@example.org"))
    assert outcome == "hard bounce: alice@example.org suppressed; not ours, not suppressed: bob@example.org"
    assert _suppressions(app) == {"alice@example.org": "hard-bounce"}
    with transaction(app.factory) as db:
        statuses = dict(db.execute(select(Message.recipient, Message.status)).all())
    assert statuses == {"alice@example.org": "bounced", "bob@example.org": "sent"}


@pytest.mark.parametrize("carol", ["delivered", "relayed", "delayed"])
def test_an_address_only_report_is_about_the_recipient_that_failed(app: App, carol: str) -> None:
    _sent(app, "carol@example.org", "dave@example.org")
    status = "4.4.1" if carol == "delayed" else "2.0.0"
    raw = _two_recipients(
        f"Final-Recipient: rfc822; carol@example.org\nAction: {carol}\nStatus: {status}\n",
        "Final-Recipient: rfc822; dave@example.org\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n",
    )
    assert parse_report(raw).kind == ReportKind.HARD
    assert _handle(app, raw).startswith("hard bounce: dave@example.org suppressed")
    assert _suppressions(app) == {"dave@example.org": "hard-bounce"}
    with transaction(app.factory) as db:
        statuses = dict(db.execute(select(Message.recipient, Message.status)).all())
    assert statuses == {"carol@example.org": "sent", "dave@example.org": "bounced"}


def test_nul_characters_and_bad_escapes_in_a_report_stop_no_batch(app: App) -> None:
    # PostgreSQL's text refuses NUL: a report holding one must not look like a store failure, which stops the
    # whole file (or every poll of the mailbox) with nothing applied.
    _sent(app, "alice@example.org", "bob@example.org", "cy@example.org")
    reports = [
        ("nul", fixtures.dsn("alice@example.org").replace(b"User unknown", b"User\x00unknown")),
        (
            "mta",
            fixtures.dsn("bob@example.org").replace(b"dns; relay.example.net", b"dns; re\x00lay.example.net"),
        ),
        ("escape", fixtures.global_dsn("cy@example.org").replace(b"cy@", b"cy\\x{D800}\\x{0}@")),
        ("named", fixtures.dsn("cy@example.org\x00x")),
    ]
    with transaction(app.factory) as db:
        tally = handle_batch(db, iter(reports), NOW, policy=Policy(RETURN_PATH), source="test\x00")
    assert (tally.read, tally.unparsed, dict(tally.kinds)) == (4, [], {"hard": 4})
    assert _suppressions(app) == {"alice@example.org": "hard-bounce", "bob@example.org": "hard-bounce"}
    with transaction(app.factory) as db:
        rows = list(db.scalars(select(BounceReport).order_by(BounceReport.id)))
        assert [r.named_address for r in rows[2:]] == [
            "cy\\x{D800}\\x{0}@example.org",
            "cy@example.org\ufffdx",
        ]
        assert (
            rows[0].diagnostic.endswith("User\ufffdunknown")
            and rows[1].reporting_mta == "re\ufffdlay.example.net"
        )


def test_a_report_holding_thousands_of_message_ids_is_matched(app: App) -> None:
    # One query per report would pass PostgreSQL's 65,535 parameters: a store error, the batch stopped.
    messages = _sent(app, "alice@example.org")
    quoted = "".join(f"Message-ID: <{n}@x>\n" for n in range(40_000))  # within the 1,000,000 read
    raw = fixtures.dsn("someone@example.net", message_id=messages["alice@example.org"].message_id).replace(
        b"I'm sorry", quoted.encode() + b"I'm sorry"
    )
    assert len(parse_report(raw).message_ids) == 40_001
    with transaction(app.factory) as db:
        tally = handle_batch(db, iter([("many", raw)]), NOW, policy=Policy(RETURN_PATH), source="test")
    assert (tally.unparsed, dict(tally.kinds)) == ([], {"hard": 1})
    assert _suppressions(app) == {"alice@example.org": "hard-bounce"}


@pytest.mark.parametrize(
    "date",
    ["Fri, 31 Dec 9999 23:59:00 -0100", "Mon, 01 Jan 0001 00:00:00 +0100", "Sat, 01 Jan 2000 99:99:99 +0000"],
)
def test_a_date_out_of_range_is_no_date_and_the_report_is_still_read(date: str) -> None:
    raw = fixtures.dsn("gone@example.org").replace(b"Wed,  2 Jun 2021 09:59:58 +0200 (CEST)", date.encode())
    report = parse_report(raw.replace(b"Wed, 02 Jun 2021 10:00:00 +0200", date.encode()))
    assert (report.kind, report.status, report.errors) == (ReportKind.HARD, "5.1.1", ())


@pytest.mark.parametrize(
    ("feedback_type", "kind"),
    [
        ("abuse", "complaint"),
        ("fraud", "complaint"),
        ("virus", "complaint"),
        ("Not-Spam", "other"),
        ("auth-failure", "other"),
    ],
)
def test_a_feedback_report_saying_the_recipient_did_not_complain_suppresses_nobody(
    app: App, feedback_type: str, kind: str
) -> None:
    messages = _sent(app, "ana@example.org")
    raw = fixtures.arf(original_rcpt="ana@example.org", message_id=messages["ana@example.org"].message_id)
    raw = raw.replace(b"Feedback-Type: abuse", f"Feedback-Type: {feedback_type}".encode())
    assert parse_report(raw).kind == kind
    _handle(app, raw)
    assert _suppressions(app) == ({"ana@example.org": "complaint"} if kind == "complaint" else {})
    with transaction(app.factory) as db:
        assert db.scalar(select(Contact.status)) == ("unsubscribed" if kind == "complaint" else "active")
        assert db.scalar(select(BounceReport.kind)) == kind
