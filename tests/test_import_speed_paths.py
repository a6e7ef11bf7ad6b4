"""The import's fast paths give exactly what the plain ways give: addresses as email-validator's one call,
files read as a stream as when read whole, chunk sizes bounded by rows and time."""

from __future__ import annotations

from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.audience.addresses import InvalidAddressError, normalise_address
from mailer.audience.contact_rows import CONTACT_COLUMNS
from mailer.audience.row_import import _next_limit
from mailer.audience.table import read_table

_ATEXT = "abcXYZ09!#$%&'*+/=?^_`{|}~-."
_DOMAINS = [
    "example.org",
    "Example.ORG",
    "bé.example",
    "xn--b-9fa.example",
    "a.io",
    "x",
    "-x.org",
    "x..org",
    "[192.0.2.1]",
    'b"c.org',
    "localhost",
    "x.invalid",
]


def _library(text: str) -> tuple[str, bool] | str:
    """email-validator's own answer for one address: (normalised, SMTPUTF8) or its message."""
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return str(exc)
    return str(result.normalized), bool(result.smtputf8)


def _ours(text: str) -> tuple[str, bool] | str:
    try:
        address = normalise_address(text)
    except InvalidAddressError as exc:
        return str(exc)
    return address.email, address.needs_smtputf8


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ATEXT + "é ", min_size=1, max_size=70), st.sampled_from(_DOMAINS))
def test_addresses_are_what_email_validator_says(local: str, domain: str) -> None:
    text = f"{local.strip()}@{domain}"
    assert _ours(text) == _library(text)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("Postmaster@Example.org", ("postmaster@example.org", False)),  # RFC 2142 names lower-cased
        ("INFO@example.org", ("info@example.org", False)),
        ("Ann.Lee@Example.ORG", ("Ann.Lee@example.org", False)),
        ("josé@example.org", ("josé@example.org", True)),
        ("ann@bé.example", ("ann@bé.example", False)),
        ("a..b@example.org", "An email address cannot have two periods in a row."),
        (".a@example.org", "An email address cannot start with a period."),
        ("a.@example.org", "An email address cannot have a period immediately before the @-sign."),
        ("a@x", "The part after the @-sign is not valid. It should have a period."),
    ],
)
def test_address_table(cell: str, expected: tuple[str, bool] | str) -> None:
    assert _ours(cell) == expected == _library(cell)


def test_a_file_is_checked_whole_for_its_encoding(tmp_path: Path) -> None:
    """A Windows-1252 byte after the first mebibyte still makes the whole file Windows-1252."""
    path = tmp_path / "late.csv"
    rows = [f"person{i}@example.org,Person {i}" for i in range(40_000)]
    path.write_bytes(("email,name\n" + "\n".join(rows) + "\nzoe@example.org,Zo\xeb\n").encode("cp1252"))
    assert path.stat().st_size > 1 << 20
    table = read_table(path, CONTACT_COLUMNS)
    records = list(table.records)
    assert (table.encoding, table.total_lines, len(records)) == ("cp1252", 40_002, 40_001)
    assert records[-1].line == 40_002 and records[-1].cells == ("zoe@example.org", "Zoë")


def test_lines_split_on_line_feeds_only(tmp_path: Path) -> None:
    path = tmp_path / "breaks.csv"
    path.write_bytes(
        b'email,name\r\nann@example.org,"Ann\rLee"\r\nbob@example.org,"Bob\r\nMarley"\r\nc@example.org,C'
    )
    table = read_table(path, CONTACT_COLUMNS)
    records = [(r.line, r.cells) for r in table.records]
    assert records == [
        (2, ("ann@example.org", "Ann\rLee")),
        (3, ("bob@example.org", "Bob\r\nMarley")),
        (5, ("c@example.org", "C")),
    ]
    assert table.total_lines == 5


@pytest.mark.parametrize(
    ("limit", "seconds", "following"),
    [
        (1000, 0.01, 2000),
        (4000, 0.01, 5000),
        (5000, 0.01, 5000),
        (1000, 0.2, 1000),
        (4000, 0.3, 2000),
        (1500, 9.0, 1000),
    ],
)
def test_chunks_bounded_by_rows_and_time(limit: int, seconds: float, following: int) -> None:
    assert _next_limit(limit, seconds) == following
