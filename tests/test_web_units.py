"""Pure parts of the web side: signed links, the key file, page wording, CSV cells, the chart."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailer.compose.links import (
    Answer,
    BadLinkError,
    Link,
    LinkKind,
    derived_key,
    key_file,
    make_token,
    message_links,
    read_token,
    recipient_tag,
    rsvp_url,
    signing_key,
    unsubscribe_url,
)
from mailer.config import Settings, load_settings
from mailer.store.queries import Bucket, LogFilter
from mailer.web.charts import bar_chart
from mailer.web.i18n import STRINGS, local_datetime, page_language
from mailer.web.staff import page_numbers, spreadsheet_safe
from tests.conftest import ROOT


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MAILER_SECRET_KEY", "unit-test-key-0123456789abcdefghijklmnop")
    return load_settings(ROOT / "config", database_url="sqlite://")


def test_links_round_trip_and_are_stable(config: Settings) -> None:
    who = "Ann@Example.org"
    url = unsubscribe_url(config, 42, who)
    assert url.startswith(config.web.base_url + "/u/") and url == unsubscribe_url(config, 42, who)
    tag = recipient_tag("ann@example.org")
    assert read_token(config, url.rsplit("/", 1)[1]) == Link(LinkKind.UNSUBSCRIBE, 42, recipient=tag)
    assert unsubscribe_url(config, 42, "bob@example.org") != url  # the link names its person
    yes = rsvp_url(config, 42, "yes", who)
    assert read_token(config, yes.rsplit("/", 1)[1]) == Link(LinkKind.RSVP, 42, Answer.YES, tag)
    assert rsvp_url(config, 42, Answer.NO, who) != yes
    assert message_links(config, 7, who) == {
        "unsubscribe_url": unsubscribe_url(config, 7, who),
        "rsvp_yes_url": rsvp_url(config, 7, Answer.YES, who),
        "rsvp_no_url": rsvp_url(config, 7, Answer.NO, who),
    }
    assert url.isascii() and " " not in url


def _forge(token: str, payload: list[object]) -> str:
    """The same signature on another payload (what someone guessing other people's links would try)."""
    signature = token.rsplit(".", 1)[1]
    return ".".join(map(str, payload)) + "." + signature


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: _forge(t, ["u", 43, recipient_tag("ann@example.org")]),  # another message, same signature
        lambda t: _forge(t, ["u", 42, recipient_tag("bob@example.org")]),  # another person
        lambda t: _forge(t, ["r", 42, recipient_tag("ann@example.org"), "yes"]),  # another kind
        lambda t: t[:-2],  # truncated
        lambda t: t.rsplit(".", 1)[0],  # no signature
        lambda t: _forge(
            t, ["u", "42x", recipient_tag("ann@example.org")]
        ),  # malformed, even if it were signed
        lambda t: "garbage",
        lambda t: "",
    ],
)
def test_forged_or_damaged_tokens_are_refused(config: Settings, mangle: object) -> None:
    token = make_token(config, Link(LinkKind.UNSUBSCRIBE, 42, recipient=recipient_tag("ann@example.org")))
    with pytest.raises(BadLinkError):
        read_token(config, mangle(token))  # type: ignore[operator]


def test_a_token_signed_with_another_key_is_refused(
    config: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token(config, Link(LinkKind.UNSUBSCRIBE, 42))
    monkeypatch.setenv("MAILER_SECRET_KEY", "another-key-0123456789abcdefghijklmnopqrstu")
    with pytest.raises(BadLinkError):
        read_token(config, token)


def test_key_file_is_made_once_with_mode_0600(
    config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILER_SECRET_KEY")
    settings = dataclasses.replace(config, base_dir=tmp_path)
    first = signing_key(settings)
    path = key_file(settings)
    assert path == tmp_path / "var" / "web-secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and signing_key(settings) == first
    url = unsubscribe_url(settings, 5, "ann@example.org")
    assert read_token(settings, url.rsplit("/", 1)[1]).message_pk == 5


def test_every_page_language_has_every_string_and_placeholders_match() -> None:
    keys = set(STRINGS["en"])
    for code, strings in STRINGS.items():
        assert set(strings) == keys, code
        for key in keys:
            assert sorted(_fields(strings[key])) == sorted(_fields(STRINGS["en"][key])), (code, key)


def _fields(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


@pytest.mark.parametrize(
    ("tag", "code", "direction"),
    [
        ("ar", "ar", "rtl"),
        ("ar-EG", "ar", "rtl"),
        ("es-419", "es", "ltr"),
        ("fr_CA", "fr", "ltr"),
        ("pt-BR", "en", "ltr"),
        ("", "en", "ltr"),
    ],
)
def test_page_language_falls_back(tag: str, code: str, direction: str) -> None:
    language = page_language(tag)
    assert (language.code, language.direction) == (code, direction)


def test_local_datetime_uses_the_contacts_zone_and_language() -> None:
    moment = datetime(2021, 7, 13, 13, 0, tzinfo=UTC)
    assert local_datetime(moment, "Africa/Lagos", "en").replace("\u202f", " ") == (
        "Tuesday, July 13, 2021, 2:00 PM (Lagos, GMT+01:00)"  # the place, as the messages name it
    )
    assert local_datetime(moment, "Europe/Paris", "fr") == "mardi 13 juillet 2021, 15:00 (Paris, UTC+02:00)"
    assert (
        local_datetime(moment, "Africa/Cairo", "ar")
        == "الثلاثاء، 13 يوليو 2021، 3:00 م (القاهرة، غرينتش+02:00)"
    )
    assert local_datetime(moment, "Not/AZone", "en").endswith("(GMT+00:00)")  # unknown zone: UTC


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1 555", "'+1 555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("ana@example.org", "ana@example.org"),
        ("550 5.1.1 no such user", "550 5.1.1 no such user"),
        (550, 550),
        (None, ""),
    ],
)
def test_spreadsheet_cells_are_neutralised(cell: object, safe: object) -> None:
    assert spreadsheet_safe(cell) == safe


def test_bar_chart_is_inline_svg_with_a_bar_per_bucket() -> None:
    start = datetime(2021, 6, 1, 13, tzinfo=UTC)
    svg = bar_chart(
        [Bucket(start + timedelta(hours=i), n) for i, n in enumerate([3, 0, 7])],
        "hour",
        title="sent <per> hour",
    )
    assert svg.startswith("<svg") and svg.count("<rect") == 3 and "&lt;per&gt;" in svg
    assert bar_chart([], "hour", title="x") == ""


def test_log_filter_reads_and_writes_query_parameters() -> None:
    filters = LogFilter.from_query({"status": " failed ", "q": "x" * 500, "bogus": "1"})
    assert filters.status == "failed" and len(filters.q) == 200
    assert filters.as_params() == {"status": "failed", "q": "x" * 200}


def test_processes_starting_together_agree_on_one_key(
    config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    monkeypatch.delenv("MAILER_SECRET_KEY")
    settings = dataclasses.replace(config, base_dir=tmp_path)
    # spawn, not fork: a fork copies locks other threads of the test process may hold at that moment
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        keys = pool.map(_key_in_child, [settings] * 8)
    assert len(set(keys)) == 1 and keys[0] == signing_key(settings)
    assert [p.name for p in (tmp_path / "var").iterdir()] == ["web-secret.key"]


def _key_in_child(settings: Settings) -> bytes:
    return signing_key(settings)


@pytest.mark.parametrize(
    "payload", ["u.42x.tag", "u.42", "r.42.tag", "r.42.tag.maybe", "x.42.tag", "u.42.tag.yes", "u..tag"]
)
def test_a_signed_token_of_the_wrong_shape_is_refused(config: Settings, payload: str) -> None:
    from mailer.compose.links import _signer

    with pytest.raises(BadLinkError, match="wrong shape"):
        read_token(config, _signer(config).sign(payload).decode())


@pytest.mark.parametrize(
    ("page", "pages", "numbers"),
    [
        (1, 1, [1]),
        (1, 2, [1, 2]),
        (1, 51, [1, 2, 3, 0, 51]),
        (7, 51, [1, 0, 5, 6, 7, 8, 9, 0, 51]),
        (4, 51, [1, 2, 3, 4, 5, 6, 0, 51]),
        (51, 51, [1, 0, 49, 50, 51]),
        (3, 5, [1, 2, 3, 4, 5]),
    ],
)
def test_the_pager_shows_first_last_and_two_either_side(page: int, pages: int, numbers: list[int]) -> None:
    assert page_numbers(page, pages) == numbers


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("", ("updated", True)),
        ("recipient", ("recipient", False)),
        ("-tries", ("tries", True)),
        ("id", ("updated", True)),
        ("-", ("updated", True)),
    ],
)
def test_log_sort_keys(sort: str, order: tuple[str, bool]) -> None:
    assert LogFilter(sort=sort).order() == order


@pytest.mark.parametrize(
    "link",
    [
        Link(LinkKind.UNSUBSCRIBE, 42, recipient="tag"),
        Link(LinkKind.RSVP, 7, Answer.YES, "tag"),
        Link(LinkKind.RSVP, 123456789, Answer.NO, "x-Y_z"),
    ],
)
def test_a_token_is_itsdangerous_signature_of_its_payload(config: Settings, link: Link) -> None:
    from mailer.compose.links import _signer

    fields = [
        link.kind.value,
        str(link.message_pk),
        link.recipient,
        *([link.answer.value] if link.answer else []),
    ]
    assert make_token(config, link) == _signer(config).sign(".".join(fields)).decode()


def _hmac_b64(key: bytes, data: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, data, hashlib.sha256).digest()).rstrip(b"=").decode("ascii")


def test_tokens_are_the_payload_and_its_hmac_sha256_under_the_links_key(config: Settings) -> None:
    master = b"unit-test-key-0123456789abcdefghijklmnop"
    links_key = hmac.new(master, b"links", hashlib.sha256).digest()
    assert derived_key(config, "links") == links_key
    assert derived_key(config, "sessions") == hmac.new(master, b"sessions", hashlib.sha256).digest()
    tag = base64.urlsafe_b64encode(hashlib.sha256(b"ann@example.org").digest()[:9]).decode("ascii")
    assert recipient_tag(" Ann@Example.ORG ") == tag == "Q4xMev5gDN8e"
    unsubscribe = f"u.42.{tag}"
    no = f"r.42.{tag}.no"
    assert make_token(config, Link(LinkKind.UNSUBSCRIBE, 42, recipient=tag)) == (
        f"{unsubscribe}.{_hmac_b64(links_key, unsubscribe.encode())}"
    )
    assert unsubscribe_url(config, 42, "ann@example.org") == (
        f"http://127.0.0.1:8080/u/{unsubscribe}.{_hmac_b64(links_key, unsubscribe.encode())}"
    )
    assert rsvp_url(config, 42, "no", "ann@example.org") == (
        f"http://127.0.0.1:8080/rsvp/{no}.{_hmac_b64(links_key, no.encode())}"
    )
    yes = f"r.42.{tag}.yes"
    assert message_links(config, 42, "ann@example.org") == {
        "unsubscribe_url": f"http://127.0.0.1:8080/u/{unsubscribe}.{_hmac_b64(links_key, unsubscribe.encode())}",
        "rsvp_yes_url": f"http://127.0.0.1:8080/rsvp/{yes}.{_hmac_b64(links_key, yes.encode())}",
        "rsvp_no_url": f"http://127.0.0.1:8080/rsvp/{no}.{_hmac_b64(links_key, no.encode())}",
    }


def test_bad_tokens_say_whether_the_signature_or_the_shape_is_wrong(config: Settings) -> None:
    from mailer.compose.links import _signer

    with pytest.raises(BadLinkError, match=r"^link signature does not match$"):
        read_token(config, "u.42.tag.bad")
    with pytest.raises(BadLinkError, match=r"^link signature does not match$"):
        read_token(config, "u.42.tag.\u00e9")
    with pytest.raises(BadLinkError, match=r"^signed payload has the wrong shape$"):
        read_token(config, _signer(config).sign("u.42").decode())


def test_a_key_file_readable_by_others_is_used_with_a_warning_and_a_short_one_refused(
    config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MAILER_SECRET_KEY")
    settings = dataclasses.replace(config, base_dir=tmp_path / "open")
    path = key_file(settings)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"k" * 32 + b"\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="mailer.compose.links"):
        assert signing_key(settings) == b"k" * 32
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} is readable by others (mode 644); run: chmod 600 {path}"
    ]
    short = dataclasses.replace(config, base_dir=tmp_path / "short")
    short_path = key_file(short)
    short_path.parent.mkdir(parents=True)
    short_path.write_bytes(b"k" * 31)
    short_path.chmod(0o600)
    with pytest.raises(ValueError, match="the signing key is too short; delete the file to make a new one"):
        signing_key(short)


def test_a_new_key_file_is_announced_once(
    config: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MAILER_SECRET_KEY")
    settings = dataclasses.replace(config, base_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="mailer.compose.links"):
        key = signing_key(settings)
    path = key_file(settings)
    assert [r.getMessage() for r in caplog.records] == [
        f"made a new signing key for web links in {path} (mode 0600); keep it: old links need it"
    ]
    assert len(key) == 64 and path.read_bytes() == key + b"\n"
