"""The one builder (mailer.compose.wire.Composer) against the straightforward standard-library build
(tests/reference_message.py): every composed message parses back with Python's email parser to exactly the
same message, with or without a calendar (REQUEST or CANCEL, ASCII or not)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.compose.ics import CalendarPart, Method, build_calendar
from mailer.compose.render import Rendered
from mailer.compose.wire import BOUNDARY, MIXED_BOUNDARY, Composer, base64_lines, quoted_printable
from mailer.config import Sender, Series, Session, StepKind
from mailer.errors import NaiveDatetimeError, PermanentDeliveryError
from mailer.store.recipient import Recipient
from tests.conftest import examples
from tests.reference_message import reference_bytes

SENDER = Sender(
    name="Budapest Convention webinars",
    address="webinars@example.org",
    reply_to="secretariat@example.org",
    unsubscribe_mailto="unsubscribe@example.org",
    redirect_all_to="",
)
LIST_ID = "bcc.example.org"

# Text a template can produce: any character of any script (controls too: they must never reach a header).
_chars = st.characters(blacklist_categories=("Cs",)) | st.sampled_from(
    [" ", "\t", "=", ".", "\n", "é", "ع", "—", '"']
)
_tricky = st.sampled_from(
    [
        "From me",
        "=?utf-8?q?x?=",
        f"--{BOUNDARY}",
        f"--{MIXED_BOUNDARY}",
        ". ",
        "\r\n",
        "x" * 1000,
        "\n.dot",
        "\n.",
        ".lead",
        "é" * 74 + ".x",
        "\u2028",
        "\x00",
    ]
)
texts = st.lists(st.text(_chars, max_size=40) | _tricky, max_size=8).map("".join)
names = st.lists(st.text(_chars, max_size=20) | _tricky, max_size=4).map(" ".join)
locals_ = st.sampled_from(["jane.doe", "a", "o'brien", "x+tag", "josé.núñez", "李"])
domains = st.sampled_from(["example.org", "assemblée.example", "mail.example.com"])
urls = st.none() | st.sampled_from(["https://mailer.example.org/u/abc.DEF_123", "http://127.0.0.1:8080/u/x"])
SESSION = Session(
    "africa-2021",
    "africa",
    "Parliamentary webinar",
    datetime(2021, 7, 13, 13, 0, tzinfo=UTC),
    "GMT-3",
    timedelta(hours=3),
    "https://meet.example.org/j/budapest-africa",
    ("en", "fr"),
    ("Opening remarks", "Discussion"),
)


@st.composite
def calendars(draw: st.DrawFn) -> CalendarPart | None:
    """None, or the calendar of a message: any summary (ASCII or not: 7bit or base64), either method."""
    if draw(st.booleans()):
        return None
    series = Series("budapest-convention-2021", "Budapest", (), "", (SESSION,), ())
    summary = draw(texts)
    return build_calendar(
        series,
        SESSION,
        sequence=draw(st.integers(0, 5)),
        method=draw(st.sampled_from(list(Method))),
        organiser_name=SENDER.name,
        organiser_address=SENDER.address,
        attendee=Recipient("guest@example.org", draw(names)),
        stamp=datetime(2021, 6, 1, tzinfo=UTC),
        summary=summary,
        language="fr",
    )


def _parse(data: bytes) -> EmailMessage:
    if data.isascii():
        message = BytesParser(policy=policy.default).parsebytes(data)
    else:  # RFC 6532: UTF-8 header fields; the bytes parser would leave surrogate escapes
        message = Parser(policy=policy.default).parsestr(data.decode("utf-8"))
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


def _meaning(message: EmailMessage) -> dict[str, object]:
    """What a reader sees: every header field decoded, the structure, the bodies decoded, and each leaf part's
    type, parameters (boundaries aside), disposition, file name and decoded bytes."""
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    headers = {name: str(value) for name, value in message.items() if name != "Content-Type"}
    leaves = [
        (
            part.get_content_type(),
            [(k, v) for k, v in part.get_params() or [] if k != "boundary"],
            part.get_content_disposition(),
            part.get_filename(),
            part.get_payload(decode=True),
        )
        for part in message.walk()
        if not part.is_multipart()
    ]
    return {
        "headers": headers,
        "type": message.get_content_type(),
        "tree": [part.get_content_type() for part in message.walk()],
        "plain": plain.get_content(),
        "html": html.get_content(),
        "leaves": leaves,
    }


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=texts.filter(lambda s: s.split()),
    text=texts,
    html=texts,
    name=names,
    local=locals_,
    domain=domains,
    kind=st.sampled_from(list(StepKind)),
    url=urls,
    auto=st.sampled_from([None, True, False]),
    calendar=calendars(),
)
def test_composed_message_parses_to_the_straightforward_build(
    subject: str,
    text: str,
    html: str,
    name: str,
    local: str,
    domain: str,
    kind: StepKind,
    url: str | None,
    auto: bool | None,
    calendar: CalendarPart | None,
) -> None:
    rendered = Rendered(subject, text, html, "fr", "fr-CA", kind)
    recipient = Recipient(email=f"{local}@{domain}", name=name, language="fr-CA")
    args = dict(
        message_id="<1b4e28ba2fa111d2883f0016d3cca427@example.org>",
        date=datetime(2021, 7, 13, 8, 0, 5, tzinfo=UTC),
        unsubscribe_url=url,
        auto_submitted=auto,
        calendar=calendar,
    )
    reference, reference_utf8 = reference_bytes(
        rendered,
        recipient,
        sender=SENDER,
        list_id=LIST_ID,
        unsubscribe_mailto=SENDER.unsubscribe_mailto,
        **args,  # type: ignore[arg-type]
    )
    composer = Composer(SENDER, list_id=LIST_ID, unsubscribe_mailto=SENDER.unsubscribe_mailto)
    composed = composer.compose(rendered, recipient, **args)  # type: ignore[arg-type]

    meaning = _meaning(_parse(composed.data))
    assert meaning == _meaning(_parse(reference))
    if calendar is not None:
        assert meaning["tree"] == [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "text/calendar",
            "application/ics",
        ]
        leaves = meaning["leaves"]
        assert isinstance(leaves, list) and leaves[2][1][-1] == ("method", calendar.method.value)
        assert leaves[2][4] == leaves[3][4] == calendar.data
    assert composed.utf8 == reference_utf8 == (not local.isascii())
    lines = composed.data.split(b"\r\n")
    assert all(len(line) <= 998 and b"\n" not in line and b"\r" not in line for line in lines)
    assert composed.data.endswith(b"\r\n")
    wire = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    assert composed.wire == wire  # the transparent form SMTP sends (RFC 5321 sec. 4.5.2)
    header = composed.data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in header.split(b"\r\n") if not composed.utf8)
    if not composed.utf8:
        assert composed.data.isascii()


def test_unsendable_address_raises_like_the_straightforward_build() -> None:
    rendered = Rendered("Hi", "text", "<p>html</p>", "en", "en", StepKind.INVITATION)
    composer = Composer(SENDER, list_id=LIST_ID, unsubscribe_mailto=SENDER.unsubscribe_mailto)
    for address in ("no-at-sign", "a@b.org\r\nBcc: x@y.org", "two words@example.org"):
        with pytest.raises(PermanentDeliveryError):
            composer.compose(
                rendered,
                Recipient(email=address),
                message_id="<a@b.org>",
                date=datetime(2021, 7, 13, tzinfo=UTC),
            )


@settings(max_examples=examples(300), deadline=None)
@given(texts)
def test_quoted_printable_line_by_line_is_the_whole_body_encoding(text: str) -> None:
    body = text.replace("\r\n", "\n").replace("\r", "\n").removesuffix("\n") + "\n"  # as a text part has it
    whole = binascii.b2a_qp(body.encode("utf-8").replace(b"\n", b"\r\n"), istext=True)
    assert quoted_printable(body) == whole
    assert quoted_printable(body) == whole  # and again from the line cache


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=400))
def test_base64_lines_are_encodebytes_with_crlf(data: bytes) -> None:
    assert base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")


def test_composed_bytes_are_pinned() -> None:
    """The bytes on the wire, pinned (SHA-256 of ``data`` and ``wire``): a refactoring never changes them."""
    composer = Composer(SENDER, list_id=LIST_ID, unsubscribe_mailto=SENDER.unsubscribe_mailto)
    series = Series("budapest-convention-2021", "Budapest", (), "", (SESSION,), ())
    calendar = build_calendar(
        series,
        SESSION,
        sequence=1,
        method=Method.REQUEST,
        organiser_name=SENDER.name,
        organiser_address=SENDER.address,
        attendee=Recipient("guest@example.org", "Zoë"),
        stamp=datetime(2021, 6, 1, tzinfo=UTC),
        summary="Webinaire parlementaire",
        language="fr",
    )
    cases = [
        (
            Rendered(
                "Invitation: webinar",
                "Dear colleague,\n.join\n",
                "<p>Dear colleague</p>\n",
                "en",
                "en",
                StepKind.INVITATION,
            ),
            Recipient("ana@example.org", "Ana Lima", "Dep."),
            "https://mailer.example.org/u/abc",
            False,
            calendar,
        ),
        (
            Rendered(
                "Demain à 13:00 : Webinaire",
                "Très bien, à bientôt.\n",
                "<p>à bientôt — merci</p>\n",
                "fr",
                "fr",
                StepKind.REMINDER,
            ),
            Recipient("aicha.toure@assemblée.example", "Aïcha Touré", "Hon."),
            "http://127.0.0.1:8080/u/x",
            True,
            None,
        ),
        (
            Rendered("دعوة", "نص عربي قصير للتجربة\n", "<p>نص</p>\n", "ar", "ar", StepKind.FOLLOW_UP),
            Recipient("josé.núñez@mail.example.com", "واصف الحويطات"),
            None,
            True,
            None,
        ),
    ]
    digests = []
    for rendered, recipient, url, auto, part in cases:
        composed = composer.compose(
            rendered,
            recipient,
            message_id="<1b4e28ba2fa111d2883f0016d3cca427@example.org>",
            date=datetime(2021, 7, 13, 8, 0, 5, tzinfo=UTC),
            unsubscribe_url=url,
            auto_submitted=auto,
            calendar=part,
        )
        digests.append(
            (
                hashlib.sha256(composed.data).hexdigest()[:16],
                hashlib.sha256(composed.wire).hexdigest()[:16],
                composed.utf8,
            )
        )
    assert digests == [
        ("0932290d8ccd582d", "f58d4097b3a62fee", False),
        ("ead57d6e3d16c20e", "ead57d6e3d16c20e", False),
        ("605edee1eada27c1", "605edee1eada27c1", True),
    ]


def test_calendar_bytes_get_crlf_line_ends_and_a_final_line_end() -> None:
    from mailer.compose.wire import _encode_calendar

    unended = CalendarPart(b"BEGIN:VCALENDAR\nVERSION:2.0\r\nEND:VCALENDAR", Method.REQUEST)
    assert _encode_calendar(unended) == ("7bit", b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n")
    ended = CalendarPart(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", Method.CANCEL)
    assert _encode_calendar(ended) == ("7bit", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    utf8 = CalendarPart("SUMMARY:Séance\r\n".encode(), Method.REQUEST)
    assert _encode_calendar(utf8) == ("base64", b"U1VNTUFSWTpTw6lhbmNlDQo=\r\n")


HEAD = b'--=_mailer-alt-7f3a9c0d\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: '


def test_a_text_part_ends_every_line_with_crlf_lone_cr_included() -> None:
    from mailer.compose.wire import _part

    assert _part("plain", "a\rb\r\nc\n.d") == (HEAD + b"7bit\r\n\r\na\r\nb\r\nc\r\n.d\r\n", True)


def test_a_line_of_998_octets_stays_7bit_and_one_of_999_is_quoted_printable() -> None:
    from mailer.compose.wire import _part, quoted_printable

    assert _part("plain", "x" * 998) == (HEAD + b"7bit\r\n\r\n" + b"x" * 998 + b"\r\n", False)
    assert _part("plain", "x" * 999) == (
        HEAD + b"quoted-printable\r\n\r\n" + quoted_printable("x" * 999 + "\n"),
        False,
    )


def _compose(composer: Composer, rendered: Rendered, **changes: object) -> bytes:
    """``rendered`` composed for ana@example.org with the pinned test's Message-ID and date, ``changes`` over them."""
    args: dict[str, object] = {
        "message_id": "<1b4e28ba2fa111d2883f0016d3cca427@example.org>",
        "date": datetime(2021, 7, 13, 8, 0, 5, tzinfo=UTC),
        **changes,
    }
    return composer.compose(rendered, Recipient("ana@example.org", "Ana Lima"), **args).data  # type: ignore[arg-type]


def test_malformed_arguments_are_refused_with_exact_messages() -> None:
    composer = Composer(SENDER, list_id=LIST_ID, unsubscribe_mailto=SENDER.unsubscribe_mailto)
    rendered = Rendered("Hi", "text\n", "<p>html</p>\n", "fr", "fr-CA", StepKind.INVITATION)
    with pytest.raises(ValueError) as raised:
        _compose(composer, Rendered("Hi", "t\n", "h\n", "fr CA", "fr-CA", StepKind.INVITATION))
    assert str(raised.value) == "malformed language tag 'fr CA'"
    with pytest.raises(ValueError) as raised:
        _compose(composer, rendered, message_id="no-brackets@example.org")
    assert str(raised.value) == "malformed Message-ID 'no-brackets@example.org': expected '<left@right>'"
    with pytest.raises(ValueError) as raised:
        _compose(composer, rendered, unsubscribe_url="javascript:alert(1)")
    assert str(raised.value) == (
        "unsubscribe URL must be an ASCII http(s) URL without spaces: 'javascript:alert(1)'"
    )
    with pytest.raises(ValueError) as raised:
        Composer(SENDER, list_id="has space.example.org", unsubscribe_mailto=SENDER.unsubscribe_mailto)
    assert str(raised.value) == (
        "malformed List-Id 'has space.example.org': expected a dot-atom like 'webinars.example.org'"
    )


def test_a_naive_date_is_refused_with_its_name() -> None:
    composer = Composer(SENDER, list_id=LIST_ID, unsubscribe_mailto=SENDER.unsubscribe_mailto)
    rendered = Rendered("Hi", "text\n", "<p>html</p>\n", "fr", "fr-CA", StepKind.INVITATION)
    with pytest.raises(NaiveDatetimeError) as raised:
        _compose(composer, rendered, date=datetime(2021, 7, 13, 8, 0, 5))
    assert str(raised.value) == "date must be timezone-aware, got naive 2021-07-13T08:00:05"


def test_list_unsubscribe_folds_after_the_mailto_exactly_when_the_url_is_past_76_characters() -> None:
    """``List-Unsubscribe: <mailto:u@example.org?subject=stop>, `` takes 55 of a line's 76 characters (mime's
    MAX_LINE, RFC 2047 sec. 2): a URL of 21 characters with its brackets stays on the line, one of 22 goes on
    the next."""
    composer = Composer(SENDER, list_id=LIST_ID, unsubscribe_mailto="mailto:u@example.org?subject=stop")
    rendered = Rendered("Hi", "text\n", "<p>html</p>\n", "fr", "fr-CA", StepKind.INVITATION)
    fits = _compose(composer, rendered, unsubscribe_url="http://a.example/u/")
    assert b"\r\nList-Unsubscribe: <mailto:u@example.org?subject=stop>, <http://a.example/u/>\r\n" in fits
    folded = _compose(composer, rendered, unsubscribe_url="http://a.example/u/x")
    assert (
        b"\r\nList-Unsubscribe: <mailto:u@example.org?subject=stop>,\r\n <http://a.example/u/x>\r\n" in folded
    )


def test_from_and_list_id_fold_at_76_characters_and_no_reply_to_without_one() -> None:
    """``From: `` and a 44-character name leave the 22-character address just room on a 76-character line;
    ``List-Id: `` and a 49-character description likewise (mime's MAX_LINE, RFC 2047 sec. 2). A sender
    without reply_to gets no Reply-To field."""
    sender = dataclasses.replace(SENDER, name="Budapest Convention webinars for parliaments", reply_to="")
    composer = Composer(
        sender,
        list_id=LIST_ID,
        unsubscribe_mailto=SENDER.unsubscribe_mailto,
        list_name="Webinars of the Budapest Convention on cybercrime",
    )
    assert composer.sender is sender
    data = _compose(composer, Rendered("Hi", "text\n", "<p>html</p>\n", "fr", "fr-CA", StepKind.INVITATION))
    assert data.split(b"\r\n")[1:9] == [
        b"From: Budapest Convention webinars for parliaments <webinars@example.org>",
        b"To: Ana Lima <ana@example.org>",
        b"Subject: Hi",
        b"Message-ID: <1b4e28ba2fa111d2883f0016d3cca427@example.org>",
        b"MIME-Version: 1.0",
        b"Content-Language: fr",
        b"List-Id: Webinars of the Budapest Convention on cybercrime <bcc.example.org>",
        b"List-Unsubscribe: <mailto:unsubscribe@example.org?subject=unsubscribe>",
    ]


def test_a_non_ascii_sender_or_reply_to_address_makes_every_message_smtputf8() -> None:
    rendered = Rendered("Hi", "text\n", "<p>html</p>\n", "fr", "fr-CA", StepKind.INVITATION)
    for sender in (
        dataclasses.replace(SENDER, address="josé@example.org"),
        dataclasses.replace(SENDER, reply_to="secrétariat@example.org"),
    ):
        composer = Composer(sender, list_id=LIST_ID, unsubscribe_mailto=SENDER.unsubscribe_mailto)
        composed = composer.compose(
            rendered,
            Recipient("ana@example.org", "Ana Lima"),
            message_id="<a@example.org>",
            date=datetime(2021, 7, 13, 8, 0, 5, tzinfo=UTC),
        )
        assert composed.utf8 is True
    ascii_only = Composer(SENDER, list_id=LIST_ID, unsubscribe_mailto=SENDER.unsubscribe_mailto)
    assert (
        ascii_only.compose(
            rendered,
            Recipient("ana@example.org", "Ana Lima"),
            message_id="<a@example.org>",
            date=datetime(2021, 7, 13, 8, 0, 5, tzinfo=UTC),
        ).utf8
        is False
    )


def test_an_unwritable_sender_or_reply_to_address_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError) as raised:
        Composer(
            dataclasses.replace(SENDER, address="no-at-sign"),
            list_id=LIST_ID,
            unsubscribe_mailto=SENDER.unsubscribe_mailto,
        )
    assert str(raised.value) == "sender address: unsendable address 'no-at-sign'"
    with pytest.raises(ValueError) as raised:
        Composer(
            dataclasses.replace(SENDER, reply_to="two words@example.org"),
            list_id=LIST_ID,
            unsubscribe_mailto=SENDER.unsubscribe_mailto,
        )
    assert str(raised.value) == "reply_to: unsendable address 'two words@example.org'"


def test_base64_only_when_more_than_a_sixth_of_the_bytes_are_8_bit() -> None:
    """ "é" is 2 of the body's bytes (with its final line end): base64 in 11 bytes, quoted-printable in 12
    (exactly a sixth) and in 13."""
    from mailer.compose.wire import _part

    assert _part("plain", "é" + "x" * 8) == (HEAD + b"base64\r\n\r\nw6l4eHh4eHh4eAo=\r\n", False)
    assert _part("plain", "é" + "x" * 9) == (
        HEAD + b"quoted-printable\r\n\r\n=C3=A9" + b"x" * 9 + b"\r\n",
        False,
    )
    assert _part("plain", "é" + "x" * 10) == (
        HEAD + b"quoted-printable\r\n\r\n=C3=A9" + b"x" * 10 + b"\r\n",
        False,
    )


def test_a_part_whose_first_line_starts_with_a_dot_says_so() -> None:
    from mailer.compose.wire import _part

    assert _part("plain", ".lead") == (HEAD + b"7bit\r\n\r\n.lead\r\n", True)
    assert _part("plain", "lead.") == (HEAD + b"7bit\r\n\r\nlead.\r\n", False)


def test_quoted_printable_lines_made_afresh_then_from_the_line_cache() -> None:
    """Encoded line by line (RFC 2045 sec. 6.7) as binascii.b2a_qp does: a trailing space as =20, a soft
    break "=" ending each line of 76 characters (even between the bytes of a character)."""
    from mailer.compose import wire

    body = "café noir \n" + "é" * 30 + "\n"
    expected = (
        b"caf=C3=A9 noir=20\r\n"
        + b"=C3=A9" * 12
        + b"=C3=\r\n=A9"
        + b"=C3=A9" * 12
        + b"=\r\n"
        + b"=C3=A9" * 5
        + b"\r\n"
    )
    wire._QP_LINES.clear()
    assert wire.quoted_printable(body) == expected
    assert wire.quoted_printable(body) == expected
