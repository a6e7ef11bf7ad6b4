"""Message building: parse what the one builder (:class:`mailer.compose.wire.Composer`) writes with the
standard parser and compare to what was meant."""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import itertools
import quopri
import re
import unicodedata
from datetime import datetime, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path
from zoneinfo import ZoneInfo

import aiosmtplib
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mailer.compose.mime import clean_header_text, encode_address
from mailer.compose.render import Rendered, Renderer
from mailer.compose.wire import Composed, Composer
from mailer.config import Sender, Settings, StepKind
from mailer.errors import NaiveDatetimeError, PermanentDeliveryError
from mailer.message_ids import make_list_id, make_message_id
from mailer.store.recipient import Recipient
from tests.conftest import CONTACTS_DIR, RunningServer, examples
from tests.reference_message import regenerate
from tests.test_render import render_step, renderer, settings

__all__ = ["renderer", "settings"]

ROOT = Path(__file__).resolve().parent.parent
DATE = datetime(2021, 6, 1, 8, 30, tzinfo=ZoneInfo("Europe/Paris"))
URL = "https://webinars.example.org/u/3f9a2c"
LIST_ID = "budapest-convention-2021.example.org"
MAILTO = "<mailto:unsubscribe@example.org?subject=unsubscribe>"
HEADERS = [
    "Date",
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Message-ID",
    "MIME-Version",
    "Content-Language",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "Content-Type",
]
ARABIC_NAME = "واصف الحويطات"


@pytest.fixture(scope="module")
def sender(settings: Settings) -> Sender:
    return settings.sender


def build(
    rendered: Rendered, recipient: Recipient, sender: Sender, **changes: object
) -> tuple[Composed, bytes]:
    list_arguments: dict[str, object] = {
        "list_id": LIST_ID,
        "list_name": "Budapest Convention webinars",
        "unsubscribe_mailto": sender.unsubscribe_mailto,
    }
    arguments: dict[str, object] = {
        "message_id": make_message_id("message:42", sender.domain),
        "date": DATE,
        "unsubscribe_url": URL,
    }
    for name, value in changes.items():
        (list_arguments if name in list_arguments else arguments)[name] = value
    composer = Composer(sender, **list_arguments)  # type: ignore[arg-type]
    message = composer.compose(rendered, recipient, **arguments)  # type: ignore[arg-type]
    return message, message.data


def needs_smtputf8(message: Composed) -> bool:
    return message.utf8


def parse(raw: bytes) -> EmailMessage:
    """The standard parser; an SMTPUTF8 message (raw UTF-8 headers, RFC 6532) is decoded first, as the
    byte parser of Python 3.11 leaves such headers as surrogate escapes."""
    if raw.isascii():
        message = BytesParser(policy=policy.default).parsebytes(raw)
    else:
        message = Parser(policy=policy.default).parsestr(raw.decode("utf-8"))
    assert isinstance(message, EmailMessage)
    return message


def display_name(raw: bytes, header: str = "To") -> str:
    """The display name of ``header`` as an RFC 2047 reader sees it.

    One encoded-word: the standard parser's answer. Several (a long name): CPython before 3.14 keeps the space
    between adjacent encoded-words of a phrase (gh-128110), which RFC 2047 §6.2 says to drop, so the phrase is
    then decoded with :func:`email.header.decode_header`, which follows §6.2.
    """
    lines = header_block(raw)
    start = header_names_at(lines).index(header)
    value = lines[start].split(b": ", 1)[1].decode()
    for line in lines[start + 1 :]:
        if line[:1] != b" ":
            break
        value += line.decode()
    phrase = value.rpartition(" <")[0]
    if phrase.count("=?utf-8?") > 1:
        return str(make_header(decode_header(phrase)))
    name = parse(raw)[header].addresses[0].display_name
    assert isinstance(name, str)
    return name


def header_names_at(lines: list[bytes]) -> list[str | None]:
    return [line.split(b":", 1)[0].decode() if line[:1] not in (b" ", b"\t") else None for line in lines]


def header_block(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def header_names(raw: bytes) -> list[str]:
    return [line.split(b":", 1)[0].decode() for line in header_block(raw) if line[:1] not in (b" ", b"\t")]


def assert_wire_form(raw: bytes) -> None:
    """CRLF only, and no header line longer than RFC 5322's 78 characters."""
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    assert all(len(line) <= 78 for line in header_block(raw)), [
        line for line in header_block(raw) if len(line) > 78
    ]


def plain(
    text: str, subject: str, language: str = "en", kind: StepKind | None = StepKind.INVITATION
) -> Rendered:
    return Rendered(subject, text, f"<p>{text}</p>\n", language, language, kind)


def test_a_french_reminder_round_trips_header_by_header(
    renderer: Renderer, settings: Settings, sender: Sender
) -> None:
    series = settings.series
    aicha = Recipient(
        "aicha.toure@assemblee.example", "Aïcha Touré", "Hon.", language="fr", time_zone="Africa/Abidjan"
    )
    rendered = render_step(renderer, series, "reminder-1d", "africa-2021", aicha, unsubscribe_url=URL)
    message, raw = build(rendered, aicha, sender)
    assert_wire_form(raw)
    assert raw.isascii() and not needs_smtputf8(message)
    assert header_names(raw) == HEADERS

    parsed = parse(raw)
    assert not parsed.defects
    assert (parsed["From"].addresses[0].display_name, parsed["From"].addresses[0].addr_spec) == (
        "Budapest Convention webinars",
        "webinars@example.org",
    )
    assert parsed["Reply-To"].addresses[0].addr_spec == "cybercrime-secretariat@example.org"
    assert (parsed["To"].addresses[0].display_name, parsed["To"].addresses[0].addr_spec) == (
        "Hon. Aïcha Touré",
        "aicha.toure@assemblee.example",
    )
    assert (
        b"To: =?utf-8?b?SG9uLiBBw69jaGEgVG91csOp?= <aicha.toure@assemblee.example>" in raw
    )  # B is shorter here
    assert parsed["Subject"] == rendered.subject
    assert parsed["Subject"] == "Demain à 13:00 : Webinaire Convention de Budapest (Région africaine)"
    assert parsed["Date"].datetime == DATE
    assert parsed["Date"] == "Tue, 01 Jun 2021 06:30:00 +0000"
    assert parsed["Message-ID"] == make_message_id("message:42", "example.org")
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Content-Language"] == "fr"
    assert parsed["List-Id"] == f"Budapest Convention webinars <{LIST_ID}>"
    assert parsed["List-Unsubscribe"] == f"{MAILTO}, <{URL}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Auto-Submitted"] == "auto-generated"

    assert parsed.get_content_type() == "multipart/alternative"
    text_part, html_part = parsed.iter_parts()
    assert (text_part.get_content_type(), html_part.get_content_type()) == ("text/plain", "text/html")
    assert text_part.get_content_charset() == html_part.get_content_charset() == "utf-8"
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_part.get_content().replace("\r\n", "\n") == rendered.text
    assert html_part.get_content().replace("\r\n", "\n") == rendered.html


def test_arabic_names_subjects_and_bodies_round_trip(
    renderer: Renderer, settings: Settings, sender: Sender
) -> None:
    series = settings.series
    wasif = Recipient(
        "elizabeth.rivera672@assembly-ma.example.org",
        ARABIC_NAME,
        language="ar",
        time_zone="Africa/Casablanca",
    )
    rendered = render_step(renderer, series, "invitation", "africa-2021", wasif, unsubscribe_url=URL)
    _message, raw = build(rendered, wasif, sender)
    assert_wire_form(raw)
    parsed = parse(raw)
    assert parsed["To"].addresses[0].display_name == ARABIC_NAME
    assert parsed["Subject"] == rendered.subject and parsed["Subject"].startswith(
        "دعوة: ندوة اتفاقية بودابست"
    )
    assert parsed["Content-Language"] == "ar"
    assert parsed["Auto-Submitted"] is None  # invitations are not auto-submitted (RFC 3834 is for reminders)
    text_part, html_part = parsed.iter_parts()
    assert text_part["Content-Transfer-Encoding"] == html_part["Content-Transfer-Encoding"] == "base64"
    assert text_part.get_content().replace("\r\n", "\n") == rendered.text
    assert '<html lang="ar" dir="rtl">' in html_part.get_content()


def test_a_150_character_french_subject_is_encoded_and_folded(sender: Sender) -> None:
    subject = (
        "Rappel : le webinaire parlementaire sur la Convention de Budapest sur la cybercriminalité "
        "(Région africaine) aura lieu mercredi à 14 h — préparez-vous"
    )
    assert len(subject) == 150
    rendered = plain("Bonjour\n", subject, "fr")
    _, raw = build(rendered, Recipient("a@example.org", "Élodie Lefèvre-Äïñ"), sender)
    assert_wire_form(raw)
    subject_lines = [line for line in header_block(raw)[header_names(raw).index("Subject") :]][:4]
    assert subject_lines[0].startswith(b"Subject: Rappel : le webinaire") and subject_lines[1].startswith(
        b" "
    )
    assert b" =?utf-8?q?cybercriminalit=C3=A9_=28R=C3=A9gion?= " in raw  # only the words that need it
    parsed = parse(raw)
    assert parsed["Subject"] == subject
    assert parsed["To"].addresses[0].display_name == "Élodie Lefèvre-Äïñ"


def test_emoji_in_subject_and_name_round_trip(sender: Sender) -> None:
    subject = "🎉 Invitation 👩🏽‍💻 webinar — save the date 📅"
    name = "Ana 🌺 Lima"
    _, raw = build(plain("Hi\n", subject), Recipient("ana@example.org", name), sender)
    assert_wire_form(raw)
    parsed = parse(raw)
    assert (parsed["Subject"], parsed["To"].addresses[0].display_name) == (subject, name)


def test_ascii_names_are_quoted_when_they_hold_specials(sender: Sender) -> None:
    for name, wire in [
        ('Ann "The Hon." O\'Neil', b'To: "Ann \\"The Hon.\\" O\'Neil" <a@example.org>'),
        ("Ann Smith", b"To: Ann Smith <a@example.org>"),
        ("Smith, Ann (MP)", b'To: "Smith, Ann (MP)" <a@example.org>'),
        ("back\\slash", b'To: "back\\\\slash" <a@example.org>'),
        ("=?utf-8?q?fake?=", b"To: =?utf-8?b?PT91dGYtOD9xP2Zha2U/PQ==?= <a@example.org>"),
    ]:
        _, raw = build(plain("x\n", "s"), Recipient("a@example.org", name), sender)
        assert wire in raw, raw
        assert parse(raw)["To"].addresses[0].display_name == name


def real_hostile_name() -> tuple[str, str]:
    """The African list's row whose name cell holds a line break followed by header text (no import clean-up)."""
    path = CONTACTS_DIR / "africa.csv"
    if not path.is_file():
        pytest.skip(f"contact files not found at {CONTACTS_DIR}")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            if "\n" in row["Last name"]:
                return f"{row['First name']} {row['Last name']}", row["Email"]
    raise AssertionError("the hostile row is gone from africa.csv")


def test_a_name_cell_with_a_line_break_and_header_text_adds_no_header(sender: Sender) -> None:
    name, address = real_hostile_name()
    assert "\r\nBcc: " in name
    _, raw = build(
        plain("x\n", "Invitation\r\nBcc: victim@mail.example.com"), Recipient(address, name, "Hon."), sender
    )
    assert_wire_form(raw)
    assert header_names(raw) == [h for h in HEADERS if h not in ("Auto-Submitted",)]
    assert b"\r\nBcc:" not in raw
    parsed = parse(raw)
    assert parsed["Bcc"] is None
    assert parsed["To"].addresses[0].display_name == "Hon. Eve Smith Bcc: victim@mail.example.com"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["eve.smith@mail.example.com"]
    assert parsed["Subject"] == "Invitation Bcc: victim@mail.example.com"


@pytest.mark.parametrize(
    ("value", "clean"),
    [
        ("a\r\nBcc: x", "a Bcc: x"),
        ("a\nb\rc", "a b c"),
        ("nul\x00bell\x07esc\x1b", "nul bell esc"),
        ("c1\x85next\x9bcsi", "c1 next csi"),
        ("ls\u2028ps\u2029end", "ls ps end"),
        ("  tabs\t\tand  spaces ", "tabs and spaces"),
        ("del\x7f", "del"),
        ("lone\ud800surrogate", "lone\ufffdsurrogate"),
        ("Zoë 👩🏽‍💻", "Zoë 👩🏽‍💻"),
    ],
)
def test_clean_header_text(value: str, clean: str) -> None:
    assert clean_header_text(value) == clean
    assert clean_header_text(clean) == clean


def test_addresses_for_headers() -> None:
    assert encode_address("eve.smith@mail.example.com") == ("eve.smith@mail.example.com", False)
    assert encode_address("aicha.toure@assemblée.example") == ("aicha.toure@xn--assemble-h1a.example", False)
    assert encode_address("josé.núñez@mail.example.com") == ("josé.núñez@mail.example.com", True)
    for bad in [
        "a b@example.org",
        "x@example.org\r\nBcc: y@example.org",
        "<x@example.org>",
        "nobody",
        "x@example.org, y@example.org",
        "@example.org",
        "x@",
        "josé@exa mple.org",
        "jo\nsé@example.org",
    ]:
        with pytest.raises(PermanentDeliveryError, match="unsendable address"):
            encode_address(bad)


def test_a_non_ascii_local_part_makes_an_smtputf8_message(sender: Sender) -> None:
    jose = Recipient("josé.núñez@mail.example.com", "José Núñez", language="es")
    message, raw = build(plain("Hola\n", "Invitación"), jose, sender)
    assert needs_smtputf8(message)
    assert "To: =?utf-8?b?Sm9zw6kgTsO6w7Fleg==?= <josé.núñez@mail.example.com>".encode() in raw
    assert_wire_form(raw)
    parsed = parse(raw)
    assert parsed["To"].addresses[0].addr_spec == "josé.núñez@mail.example.com"
    assert parsed["To"].addresses[0].display_name == "José Núñez"
    assert parsed["Subject"] == "Invitación"

    idn = Recipient("aicha.toure@assemblée.example", "Aïcha Touré")
    message, raw = build(plain("x\n", "s"), idn, sender)
    assert not needs_smtputf8(message) and raw.isascii()
    assert parse(raw)["To"].addresses[0].addr_spec == "aicha.toure@xn--assemble-h1a.example"


def test_message_ids_are_stable_per_key() -> None:
    first = make_message_id("contact:7/session:africa-2021/step:reminder-1d", "example.org")
    assert first == make_message_id("contact:7/session:africa-2021/step:reminder-1d", "example.org")
    assert first != make_message_id("contact:7/session:africa-2021/step:reminder-1h", "example.org")
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", first)
    assert make_message_id("k", "assemblée.example").endswith("@xn--assemble-h1a.example>")
    with pytest.raises(ValueError, match="not a host name"):
        make_message_id("k", "bad host>")
    assert make_list_id("Budapest Convention 2021!", "example.org") == "budapest-convention-2021.example.org"


@pytest.mark.parametrize("language", ["en", "fr", "ar"])
def test_the_builder_writes_what_the_standard_generator_writes(
    renderer: Renderer, settings: Settings, sender: Sender, language: str
) -> None:
    series = settings.series
    for step in series.steps:
        for address in ("someone@example.org", "josé.núñez@mail.example.com"):
            recipient = Recipient(address, 'Zoë "Q" Smith', language=language, time_zone="Pacific/Apia")
            rendered = render_step(renderer, series, step, "africa-2021", recipient, unsubscribe_url=URL)
            _, raw = build(rendered, recipient, sender)
            assert regenerate(raw)[1] == raw


def test_a_header_added_later_goes_through_the_standard_generator(sender: Sender) -> None:
    _, built = build(plain("x\n", "s"), Recipient("a@example.org"), sender)
    message, _ = regenerate(built)
    campaign = " ".join(["Région africaine"] * 8)
    message["X-Campaign"] = campaign
    raw = message.as_bytes(policy=message.policy)
    assert_wire_form(raw)
    assert b"X-Campaign: =?utf-8?" in raw and parse(raw)["X-Campaign"] == campaign


def test_building_twice_gives_the_same_bytes(sender: Sender) -> None:
    rendered = plain("Dear colleague,\n", "Invitation")
    assert (
        build(rendered, Recipient("a@example.org"), sender)[1]
        == build(rendered, Recipient("a@example.org"), sender)[1]
    )


def test_list_unsubscribe_variants_and_auto_submitted(sender: Sender) -> None:
    rendered = plain("x\n", "s", kind=StepKind.NOTICE)
    _, raw = build(rendered, Recipient("a@example.org"), sender, unsubscribe_url=None)
    parsed = parse(raw)
    assert parsed["List-Unsubscribe"] == MAILTO and parsed["List-Unsubscribe-Post"] is None
    assert parsed["Auto-Submitted"] == "auto-generated"

    _, raw = build(
        rendered,
        Recipient("a@example.org"),
        sender,
        unsubscribe_url="http://127.0.0.1:8000/u/1",
        auto_submitted=False,
    )
    parsed = parse(raw)
    assert parsed["List-Unsubscribe"] == f"{MAILTO}, <http://127.0.0.1:8000/u/1>"
    assert parsed["List-Unsubscribe-Post"] is None  # RFC 8058 one-click needs https
    assert parsed["Auto-Submitted"] is None

    _, raw = build(
        rendered,
        Recipient("a@example.org"),
        sender,
        unsubscribe_mailto="mailto:leave@example.org?subject=stop",
    )
    assert parse(raw)["List-Unsubscribe"].startswith("<mailto:leave@example.org?subject=stop>")


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"date": datetime(2021, 6, 1, 8, 30)}, NaiveDatetimeError, "naive"),
        ({"message_id": "no-brackets@example.org"}, ValueError, "Message-ID"),
        ({"message_id": "<a@example.org>\r\nBcc: x@example.org"}, ValueError, "Message-ID"),
        ({"list_id": "has space.example.org"}, ValueError, "List-Id"),
        ({"unsubscribe_url": "https://example.org/u?a=1\r\nBcc: x"}, ValueError, "unsubscribe URL"),
        ({"unsubscribe_url": "javascript:alert(1)"}, ValueError, "unsubscribe URL"),
    ],
)
def test_malformed_arguments_are_refused(
    sender: Sender, changes: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build(plain("x\n", "s"), Recipient("a@example.org"), sender, **changes)


def test_body_encodings_decode_exactly(sender: Sender) -> None:
    long_line = "word " * 300 + "\n"  # 1500 characters: over RFC 5322's 998, so not 7bit
    for text, cte in [
        ("Plain ASCII only.\n", "7bit"),
        (long_line, "quoted-printable"),
        ("line\n" * 400, "7bit"),
        ("Très bien, à bientôt.\n", "base64"),
        ("Nous vous remercions d’avoir participé au webinaire.\n", "quoted-printable"),
        ("نص عربي قصير للتجربة\n", "base64"),
        ("trailing space \n-- \nend", "7bit"),
        ("=?utf-8?q?x?= = sign é\n", "quoted-printable"),
    ]:
        _, raw = build(plain(text, "s"), Recipient("a@example.org"), sender)
        text_part = next(parse(raw).iter_parts())
        assert text_part["Content-Transfer-Encoding"] == cte
        expected = text if text.endswith("\n") else text + "\n"
        assert text_part.get_content().replace("\r\n", "\n") == expected
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


names = st.text(max_size=120)
subjects = st.text(min_size=1, max_size=300)


@hypothesis_settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=names, subject=subjects)
def test_any_name_and_subject_round_trip_without_header_injection(
    sender: Sender, name: str, subject: str
) -> None:
    recipient = Recipient("someone@example.org", name)
    _message, raw = build(plain("body\n", subject), recipient, sender)
    assert_wire_form(raw)
    assert header_names(raw) == [h for h in HEADERS if h != "Auto-Submitted"]
    parsed = parse(raw)
    assert display_name(raw) == clean_header_text(name)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["someone@example.org"]
    assert parsed["Subject"] == clean_header_text(subject)


def send(server: RunningServer, raw: bytes, recipient: str, **options: object) -> None:
    asyncio.run(
        aiosmtplib.send(
            raw,
            sender="webinars@example.org",
            recipients=[recipient],
            hostname=server.host,
            port=server.port,
            start_tls=False,
            use_tls=False,
            **options,
        )
    )  # type: ignore[arg-type]


def test_a_built_message_goes_through_a_real_smtp_server(
    renderer: Renderer, settings: Settings, sender: Sender, smtp_server: RunningServer
) -> None:
    series = settings.series
    wasif = Recipient(
        "elizabeth.rivera672@assembly-ma.example.org",
        ARABIC_NAME,
        "Ms.",
        language="ar",
        time_zone="Africa/Casablanca",
    )
    rendered = render_step(renderer, series, "reminder-1h", "africa-2021", wasif, unsubscribe_url=URL)
    _, raw = build(rendered, wasif, sender)
    send(smtp_server, raw, wasif.email)

    jose = Recipient(
        "josé.núñez@mail.example.com", "José Núñez", language="es", time_zone="America/Mexico_City"
    )
    rendered_es = render_step(renderer, series, "invitation", "latin-america-2022", jose, unsubscribe_url=URL)
    message, raw_utf8 = build(
        rendered_es, jose, sender, message_id=make_message_id("message:43", sender.domain)
    )
    assert needs_smtputf8(message)
    send(smtp_server, raw_utf8, jose.email, mail_options=["SMTPUTF8"])

    first, second = smtp_server.messages
    assert first.rcpt_tos == [wasif.email] and first.data.replace(b"\r\n", b"\n") == raw.replace(
        b"\r\n", b"\n"
    )
    received = first.parsed()
    assert received["To"].addresses[0].display_name == f"Ms. {ARABIC_NAME}"
    assert received["Subject"] == rendered.subject
    assert received["Message-ID"] == make_message_id("message:42", sender.domain)
    assert received["Auto-Submitted"] == "auto-generated"
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == rendered.text  # type: ignore[union-attr]

    assert second.rcpt_tos == ["josé.núñez@mail.example.com"] and "SMTPUTF8" in second.mail_options
    received = parse(second.data)
    assert received["To"].addresses[0].addr_spec == "josé.núñez@mail.example.com"
    assert received["Subject"] == rendered_es.subject
    assert received.get_body(("html",)).get_content().replace("\r\n", "\n") == rendered_es.html  # type: ignore[union-attr]


LONG_SUBJECTS = {
    "french accents at every fold": "Réunion à Genève : "
    + " ".join(["élevé"] * 10 + ["déjà-vu"] * 8 + ["çà"] * 12)
    + " — fin",
    "french decomposed accents": unicodedata.normalize(
        "NFD",
        "Rappel : le webinaire parlementaire sur la Convention de Budapest sur la cybercriminalité "
        "(Région africaine) aura lieu mercredi à 14 h — préparez-vous, élus, à débattre",
    ),
    "arabic": "تذكير: "
    + "الندوة البرلمانية عبر الإنترنت حول اتفاقية بودابست بشأن الجريمة الإلكترونية " * 2
    + "(المنطقة الأفريقية)",
    "emoji": "🎉 Invitation 👩🏽‍💻 " + "webinar 📅 save the date 🇧🇷🇵🇹 " * 5 + "👨‍👩‍👧‍👦 end",
    "mixed scripts": "Webinar — "
    + "Convention de Budapest / اتفاقية بودابست / Convenção de Budapeste / " * 3
    + "end",
}


@pytest.mark.parametrize("subject", list(LONG_SUBJECTS.values()), ids=list(LONG_SUBJECTS))
def test_long_non_ascii_subjects_fold_into_whitespace_separated_encoded_words(
    sender: Sender, subject: str
) -> None:
    assert len(subject) >= 150
    name = "Élodie Lefèvre-Äïñ واصف الحويطات 🌺"
    message, raw = build(plain("x\n", subject), Recipient("elodie@example.org", name), sender)
    assert_wire_form(raw)
    assert raw.isascii() and not needs_smtputf8(message)  # non-ASCII names and subjects never need SMTPUTF8
    lines = header_block(raw)
    start = header_names_at(lines).index("Subject")
    folded = [lines[start], *list(itertools.takewhile(lambda line: line[:1] == b" ", lines[start + 1 :]))]
    assert len(folded) >= 3 and all(len(line) <= 78 for line in folded)
    value = b"\r\n".join(folded).decode("ascii").removeprefix("Subject: ")
    words = re.findall(r"=\?utf-8\?[qb]\?[^?]*\?=", value)
    assert words and all(len(word) <= 75 for word in words)  # RFC 2047 §2
    assert not re.search(r"\?=(?!\s|$)", value) and not re.search(r"\S=\?utf-8", value)  # §5(1): whitespace
    for word in words:  # each word decodes on its own: no character split between two of them
        data = (
            base64.b64decode(word[10:-2])
            if word[8] == "b"
            else quopri.decodestring(word[10:-2].replace("_", " ").encode("ascii"), header=True)
        )
        data.decode("utf-8")
    assert parse(raw)["Subject"] == subject
    assert str(make_header(decode_header(value))) == subject
    assert display_name(raw) == name


def test_non_ascii_names_are_encoded_and_a_non_ascii_local_part_is_never_an_encoded_word(
    sender: Sender,
) -> None:
    for address, wire in [
        ("wasif@assemblée.example", b"<wasif@xn--assemble-h1a.example>"),
        ("wasif@example.org", b"<wasif@example.org>"),
    ]:
        message, raw = build(plain("x\n", "s"), Recipient(address, ARABIC_NAME), sender)
        assert raw.isascii() and not needs_smtputf8(message)
        assert b"To: =?utf-8?b?" in raw and wire in raw

    message, raw = build(plain("x\n", "s"), Recipient("واصف@assemblée.example", ARABIC_NAME), sender)
    assert needs_smtputf8(message)
    lines = header_block(raw)
    start = header_names_at(lines).index("To")
    to = b"".join([lines[start], *itertools.takewhile(lambda line: line[:1] == b" ", lines[start + 1 :])])
    assert to.endswith(" <واصف@xn--assemble-h1a.example>".encode())  # raw UTF-8 (RFC 6532), never =?..?=
    assert to.startswith(b"To: =?utf-8?b?")  # the display name is still encoded
    parsed = parse(raw)
    assert parsed["To"].addresses[0].addr_spec == "واصف@xn--assemble-h1a.example"
    assert parsed["To"].addresses[0].display_name == ARABIC_NAME
