"""The fast paths of the one builder (mailer.compose.wire) against a message composed on its own: a part
filled in from its render group's layout (shared lines encoded once, only the personal lines per message),
the calendar's shared head in base64, the Date, To and List-Unsubscribe fields written without folding.
Every message must be byte for byte what the plain path writes, and the fast path must be the one taken."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.compose import wire
from mailer.compose.ics import CalendarPart, Method, build_calendar
from mailer.compose.mime import BOUNDARY_MARK, mailbox, mailbox_words, url_list
from mailer.compose.personalise import PERSONAL, Filled, Layout, Piece, fill, fill_layout, layout
from mailer.compose.render import Rendered
from mailer.compose.wire import BOUNDARY, MIXED_BOUNDARY, Composer
from mailer.config import Sender, Series, Session
from mailer.store.recipient import Recipient
from tests.conftest import examples

SENDER = Sender(
    name="Budapest Convention webinars",
    address="webinars@example.org",
    reply_to="secretariat@example.org",
    unsubscribe_mailto="unsubscribe@example.org",
    redirect_all_to="",
)
DATE = datetime(2021, 6, 1, 13, 0, 5, tzinfo=UTC)
NAME = (0, False)  # greeting_name, printed as it is
NAME_HTML = (0, True)  # greeting_name, HTML-escaped
LINK = (1, False)  # unsubscribe_url


def _values(name: str, link: str = "https://mailer.example.org/u/abc") -> dict[str, object]:
    return {"greeting_name": name, "unsubscribe_url": link, "rsvp_yes_url": "", "rsvp_no_url": ""}


def _rendered(
    text: tuple[Piece, ...],
    html: tuple[Piece, ...],
    values: dict[str, object],
    layouts: tuple[Layout, Layout] | None = None,
) -> Rendered:
    """The texts of one message, filled in from ``layouts`` (the layouts of ``text`` and ``html``, shared by
    a group's messages) or from new ones."""
    text_layout, html_layout = layouts or (layout(text), layout(html))
    filled = (fill_layout(text_layout, values), fill_layout(html_layout, values))
    assert filled[0].text == fill(text, values) and filled[1].text == fill(html, values)
    return Rendered("Subject", filled[0].text, filled[1].text, "en", "en", filled=filled)


def _compose(rendered: Rendered, composer: Composer | None = None) -> wire.Composed:
    return (
        composer or Composer(SENDER, list_id="bcc.example.org", unsubscribe_mailto="u@example.org")
    ).compose(
        rendered,
        Recipient("guest@example.org", "Guest"),
        message_id="<1@example.org>",
        date=DATE,
        unsubscribe_url="https://mailer.example.org/u/abc",
    )


def _alone(rendered: Rendered) -> wire.Composed:
    """The message composed from the texts alone (no layout): the plain path."""
    return _compose(dataclasses.replace(rendered, filled=None))


def _same_by_the_fast_path(
    text: tuple[Piece, ...], html: tuple[Piece, ...], names: list[str], monkeypatch: pytest.MonkeyPatch
) -> list[wire.Composed]:
    """Compose one message per name from one layout, after the plain path; the fast path never calls
    wire._part for a part with personal lines (only for a whole shared part, once)."""
    layouts = (layout(text), layout(html))
    rendered = [_rendered(text, html, _values(name), layouts) for name in names]
    expected = [_alone(r) for r in rendered]
    plain = wire._part
    calls: list[str] = []

    def counted(subtype: str, body: str) -> tuple[bytes, bool]:
        calls.append(subtype)
        return plain(subtype, body)

    monkeypatch.setattr(wire, "_part", counted)
    composed = [_compose(r) for r in rendered]
    monkeypatch.setattr(wire, "_part", plain)
    assert composed == expected
    shared_only = [layout(text).lines == (), layout(html).lines == ()]
    assert calls == [s for s, whole in zip(("plain", "html"), shared_only, strict=True) if whole]
    return composed


def test_a_shared_line_starting_with_a_dot_is_stuffed_in_the_wire_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (".first line\nDear ", NAME, ",\n.after the name\n..\n.\nend\n")
    html = ("<p>Dear ", NAME_HTML, "</p>\n.dot in html\n")
    composed = _same_by_the_fast_path(text, html, ["Amina", "José"], monkeypatch)
    assert b"\r\n\r\n..first line\r\n" in composed[0].wire
    assert b"\r\n..after the name\r\n" in composed[0].wire
    assert b"\r\n...\r\n..\r\nend" in composed[0].wire  # 7bit: "..", "." stuffed
    assert b"\r\n...\r\n=2E\r\nend" in composed[1].wire  # quoted-printable encodes a lone "."
    assert b"\r\n.after the name\r\n" in composed[0].data


def test_a_name_starting_with_a_dot_is_stuffed_and_a_shared_text_without_dots_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = ("Hello\n", NAME, "\nbye\n")
    composed = _same_by_the_fast_path(
        text, ("<p>", NAME_HTML, "</p>\n"), [".Dot", "Plain", "é" + "a" * 69 + ".b"], monkeypatch
    )
    assert b"\r\n..Dot\r\n" in composed[0].wire and composed[0].data != composed[0].wire
    assert composed[1].wire is composed[1].data
    assert b"=\r\n..b" in composed[2].wire  # the soft line break put the dot first on a line


def test_non_ascii_shared_text_is_quoted_printable_or_base64_as_the_whole_part_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = ("Señor ", NAME, ",\nla sesión será en línea.\n", LINK, "\nAdiós\n")
    arabic = ("مرحبا ", NAME, "\nنص مشترك طويل بالعربية\n", LINK, "\n")
    composed = _same_by_the_fast_path(text, arabic, ["Amina", "محمد العلي", "José"], monkeypatch)
    assert b"Content-Transfer-Encoding: quoted-printable" in composed[0].data
    assert b'text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64' in composed[0].data


@pytest.mark.parametrize("width", [60, 70, 73, 74, 75, 76, 77, 78, 150])
def test_shared_text_next_to_a_value_across_the_76_column_line(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = ("x" * width, NAME, "y" * 20 + "\n" + "s" * 76 + "\n" + "t" * 77 + "\né" * 3 + "\n")
    html = ('<a href="', LINK, '">' + "z" * (width - 10) + "</a>\n")
    for name in ("Amina", "Hélène", "=" * 5, "a b " * 10):
        _same_by_the_fast_path(text, html, [name, name + "é", name + " "], monkeypatch)


def test_a_name_holding_equals_signs_or_the_boundary_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("Dear ", NAME, ",\nplain ascii text\n")
    html = ("<p>", NAME_HTML, "</p>\n")
    names = ["A=B", "=?utf-8?q?x?=", f"--{BOUNDARY}", f"--{MIXED_BOUNDARY}", BOUNDARY_MARK, "x " * 600]
    composed = _same_by_the_fast_path(text, html, names, monkeypatch)
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\nDear A=B," in composed[0].data
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\nDear =?utf-8?q?x?=," in composed[1].data
    for message in composed[2:5]:  # the mark is in the name: never 7bit
        assert b'plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable' in message.data
        assert message.data.count(f"\r\n--{BOUNDARY}\r\n".encode()) == 2  # before the two parts only
    assert b"quoted-printable" in composed[5].data  # a line of 1200 characters


def test_a_shared_boundary_mark_or_long_line_makes_every_message_quoted_printable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for shared in (f"see --{BOUNDARY}\n", "L" * 999 + "\n"):
        composed = _same_by_the_fast_path(
            ("Hi ", NAME, "\n" + shared), ("<p>", NAME_HTML, "</p>\n"), ["Amina"], monkeypatch
        )
        assert (
            b'text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable' in composed[0].data
        )


@pytest.mark.parametrize("length", [997, 998, 999])
def test_7bit_up_to_998_characters_a_line_shared_or_personal(
    length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = _same_by_the_fast_path(
        ("L" * length + "\n", NAME, "\n"), ("<p>", NAME_HTML, "</p>\n"), ["A"], monkeypatch
    )
    personal = _same_by_the_fast_path(
        ("Hi\n", NAME, "\nbye\n"),
        ("<p>", NAME_HTML, "</p>\n"),
        ["N" * length, "M\n" + "N" * length],
        monkeypatch,
    )
    cte = b"7bit" if length <= 998 else b"quoted-printable"
    for message in (shared[0], personal[0], personal[1]):
        assert b'text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: ' + cte in message.data


def test_base64_exactly_when_more_than_a_sixth_of_the_octets_are_8_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Body "é\n" + name + "\n": octets 2 + 1 + len(name) + 1, 8-bit octets 2 + those of the name.
    for name, cte in [
        ("a" * 8, b"quoted-printable"),
        ("a" * 7, b"base64"),
        ("é" + "a" * 18, b"quoted-printable"),
        ("é" + "a" * 17, b"base64"),
    ]:
        composed = _same_by_the_fast_path(
            ("é\n", NAME, "\n"), ("<p>", NAME_HTML, "</p>\n"), [name], monkeypatch
        )
        assert b'text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: ' + cte in composed[0].data, name
        assert composed[0].wire is composed[0].data  # no line starts with a dot


def test_parts_with_no_personal_line_or_no_shared_text_around_them(monkeypatch: pytest.MonkeyPatch) -> None:
    composed = _same_by_the_fast_path(
        ("only shared text, no line end",), ("<p>shared</p>\n",), ["A", "B"], monkeypatch
    )
    assert composed[0].data == composed[1].data
    _same_by_the_fast_path(
        (NAME, "\n", NAME, "\n\n", NAME, "\n"), (NAME_HTML, "\n"), ["A", "Bé", ".c"], monkeypatch
    )
    _same_by_the_fast_path(
        ("start\n", NAME, "\nno line end"), ("x\n\n", NAME_HTML, "\n\n\n"), ["A", "Bé"], monkeypatch
    )


def test_a_part_ending_with_a_personal_line_or_holding_a_carriage_return_takes_the_plain_path() -> None:
    for text, name in [
        (("Dear ", NAME), "A"),
        (("Dear\r\n", NAME, "\n"), "A"),
        (("Dear ", NAME, "\n"), "A\rB"),
        ((NAME, "\n", NAME), "A\n"),  # ends with a personal line that ends with a line break
    ]:
        rendered = _rendered(text, ("<p>", NAME_HTML, "</p>\n"), _values(name))
        assert _compose(rendered) == _alone(rendered)
        shared = rendered.filled[0].layout.cache["plain"] if rendered.filled else "?"
        # The layout is usable when only the name holds the CR; else it ends with a name, or holds a CR.
        assert isinstance(shared, wire._Shared) if "\r" in name else shared is None
        assert rendered.text == "A\n\nA\n" or name != "A\n"


def test_texts_changed_after_filling_in_are_composed_as_they_are() -> None:
    rendered = _rendered(("Dear ", NAME, "\n"), ("<p>", NAME_HTML, "</p>\n"), _values("Amina"))
    changed = dataclasses.replace(rendered, text="Other text\n", html="<p>other</p>\n")
    assert changed.filled is rendered.filled
    assert _compose(changed) == _alone(changed)
    assert b"Other text" in _compose(changed).data


def test_wrapped_personal_lines_are_filled_as_a_whole_render_fills_them() -> None:
    wrapped = ("\ue805Dear ", NAME, ", " + "word " * 20 + "\ue804\nshared\n")
    twice = ("\ue805a ", NAME, "\ue804 and \ue805b ", NAME, "\ue804\n")
    for text in (wrapped, twice):
        for name in ("Amina", "x" * 80, "José Núñez de la Vega " * 3):
            filled = fill_layout(layout(text), _values(name))
            assert filled.text == fill(text, _values(name))
    assert layout(wrapped).lines[0][1] is True and layout(twice).lines[0][1] is False


_chars = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\r\ue800\ue801\ue802\ue803\ue804\ue805"
) | st.sampled_from([" ", "=", ".", "\n", "é", "ع", "\t"])
_shared = st.lists(
    st.text(_chars, max_size=30)
    | st.sampled_from(["\n.", ".", "=", " \n", "x" * 80, "é" * 40, f"--{BOUNDARY}"]),
    max_size=5,
).map("".join)
_name = st.text(_chars, max_size=30) | st.sampled_from([".", ".x", "=", " ", "a" * 100, f"--{BOUNDARY}"])


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(shared=st.lists(_shared, min_size=2, max_size=5), names=st.lists(_name, min_size=1, max_size=3))
def test_any_shared_text_and_names_compose_as_the_plain_path(shared: list[str], names: list[str]) -> None:
    text: list[Piece] = [shared[0]]
    for after in shared[1:]:
        text += [NAME, after]
    rendered = [
        _rendered(tuple(text), ("<b>", NAME_HTML, "</b>" + shared[-1]), _values(name)) for name in names
    ]
    for r in rendered:
        assert _compose(r) == _alone(r)


def test_the_calendar_head_is_encoded_once_and_only_for_the_calendar_it_starts() -> None:
    session = Session(
        "africa-2021",
        "africa",
        "Séance parlementaire",
        datetime(2021, 7, 13, 13, tzinfo=UTC),
        "GMT-3",
        timedelta(hours=3),
        "https://meet.example.org/j/x",
        ("en", "fr"),
        ("Ouverture", "Débat"),
    )
    series = Series("budapest-convention-2021", "Budapest", (), "", (session,), ())
    rendered = Rendered("S", "t\n", "<p>h</p>\n", "fr", "fr")
    calendars = [
        build_calendar(
            series,
            session,
            sequence=1,
            method=Method.REQUEST,
            organiser_name="W",
            organiser_address="w@example.org",
            attendee=Recipient(f"g{i}@example.org", name),
            stamp=DATE + timedelta(seconds=i),
            summary="Séance",
            language="fr",
        )
        for i, name in enumerate(["Amina", "José Núñez", "x" * 200])
    ]
    composer = Composer(SENDER, list_id="bcc.example.org", unsubscribe_mailto="u@example.org")

    def compose(calendar: CalendarPart) -> bytes:
        return composer.compose(
            rendered, Recipient("g@example.org"), message_id="<1@example.org>", date=DATE, calendar=calendar
        ).data

    before = wire._base64_head.cache_info()
    fast = [compose(c) for c in calendars]
    after = wire._base64_head.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) in [(2, 1), (3, 0)]
    assert calendars[0].head and len(calendars[0].head) > 57
    assert fast == [compose(dataclasses.replace(c, head=b"")) for c in calendars]
    stale = dataclasses.replace(calendars[1], head=b"#" + calendars[1].head[1:])  # not the start of data
    assert compose(stale) == compose(calendars[1])
    short = dataclasses.replace(calendars[1], head=calendars[1].head[:100])
    assert compose(short) == compose(calendars[1])


def test_date_fields_are_remade_for_another_second_and_written_in_utc() -> None:
    composer = Composer(SENDER, list_id="bcc.example.org", unsubscribe_mailto="u@example.org")
    rendered = Rendered("S", "t\n", "<p>h</p>\n", "en", "en")
    dates = [
        DATE,
        DATE + timedelta(microseconds=999_999),
        DATE + timedelta(seconds=1),
        DATE.astimezone(timezone(timedelta(hours=2))),
        DATE,
    ]
    fields = [
        composer.compose(
            rendered, Recipient("g@example.org"), message_id="<1@example.org>", date=d
        ).data.split(b"\r\n", 1)[0]
        for d in dates
    ]
    assert fields == [
        b"Date: Tue, 01 Jun 2021 13:00:05 +0000",
        b"Date: Tue, 01 Jun 2021 13:00:05 +0000",
        b"Date: Tue, 01 Jun 2021 13:00:06 +0000",
        b"Date: Tue, 01 Jun 2021 13:00:05 +0000",
        b"Date: Tue, 01 Jun 2021 13:00:05 +0000",
    ]


@pytest.mark.parametrize(
    "name", ["", "Amina", "Hon. Amina Diallo", 'O"Brien x', "a\\b c", "José", "=?x?=", "w" * 61]
)
def test_to_is_written_at_once_exactly_when_it_fits_one_line(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for length in range(40, 80):
        address = "a" * (length - len("@example.org")) + "@example.org"
        expected = f"To: {mailbox('To', name, address)}\r\n".replace("\n ", "\r\n ").encode()
        assert wire._to(name, address) == expected
        folded = wire._folded_to
        monkeypatch.setattr(wire, "_folded_to", lambda *args: b"folded")
        one_line = len(expected) - 2 <= 76 and mailbox_words(name) is not None
        assert (wire._to(name, address) == expected) is one_line
        monkeypatch.setattr(wire, "_folded_to", folded)


def test_list_unsubscribe_for_per_message_urls_folds_as_url_list_does() -> None:
    composer = Composer(SENDER, list_id="bcc.example.org", unsubscribe_mailto="u@e.org")
    rendered = Rendered("S", "t\n", "<p>h</p>\n", "en", "en")
    mailto = "<mailto:u@e.org?subject=unsubscribe>"
    for n in range(15):  # the first 15 URLs are kept (and made by url_list), the others are not
        composer.compose(
            rendered,
            Recipient("g@example.org"),
            message_id="<1@example.org>",
            date=DATE,
            unsubscribe_url=f"http://e.org/{n}",
        )
    fields = []
    for length in range(30):
        url = "http://e.org/" + "x" * length
        data = composer.compose(
            rendered, Recipient("g@example.org"), message_id="<1@example.org>", date=DATE, unsubscribe_url=url
        ).data
        expected = f"List-Unsubscribe: {url_list('List-Unsubscribe', [mailto, f'<{url}>'])}\r\n"
        assert expected.replace("\n ", "\r\n ").encode() in data, length
        fields.append("\n " in expected)
    assert len(composer._unsubscribe) == 16
    assert fields.index(True) == 6  # the line would be 77 characters: the URL goes on the next one
    assert all(fields[6:]) and not any(fields[:6])


def test_filled_parts_know_their_layout() -> None:
    part = layout(("a\n", NAME, "\nb\n", LINK, " c\n"))
    assert part.shared == ("a\n", "\nb\n", "\n")
    assert part.lines == (((NAME,), False), ((LINK, " c"), False))
    filled = fill_layout(part, _values("N", "L"))
    assert isinstance(filled, Filled) and filled.layout is part
    assert (filled.lines, filled.text) == (("N", "L c"), "a\nN\nb\nL c\n")
    assert PERSONAL[:2] == ("greeting_name", "unsubscribe_url")


_row_text = st.lists(
    st.sampled_from([" ", "\t", "-", "*", "\u2022", "1", "2", ".", "a", "é", "x" * 30]), max_size=12
).map("".join)
_value = st.lists(
    st.sampled_from(["1", ".", "-", "a", "é", "/", "x" * 40, " ", "\t", "\u00a0"]), max_size=12
).map("".join)


@settings(max_examples=examples(500), deadline=None)
@given(
    before=_row_text,
    between=_row_text,
    after=_row_text,
    values=st.lists(st.tuples(_value, _value), min_size=1, max_size=4),
)
def test_wrapped_lines_from_stand_ins_are_the_lines_wrapped_each_time(
    before: str, between: str, after: str, values: list[tuple[str, str]]
) -> None:
    """One wrapped personal line (two values) filled for several recipients: the stand-in wrapping kept for
    the values' lengths gives what wrap_text gives the line (hanging indents, digits and dots included)."""
    row = (f"\ue805{before}", NAME, between, LINK, f"{after}\ue804")
    part = layout((*row, "\nend\n"))
    assert part.lines[0][1] is True
    for name, link in [*values, *values]:
        if not name or not link:
            continue
        assert fill_layout(part, _values(name, link)).text == fill((*row, "\nend\n"), _values(name, link))


def test_a_value_that_changes_the_hanging_indent_is_wrapped_on_its_own() -> None:
    row = ("\ue805", NAME, " " + "word " * 20 + "\ue804\n")
    part = layout(row)
    for name in ("1.", "ab", "-", "12"):  # "1." then " " hangs the next lines under the text
        assert fill_layout(part, _values(name)).text == fill(row, _values(name))
    assert "\n   word" in fill_layout(part, _values("1.")).text
    assert "\nword" in fill_layout(part, _values("ab")).text
