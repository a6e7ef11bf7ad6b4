from __future__ import annotations

from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest

from mailer.config import load_settings, parse_offset
from mailer.errors import ConfigError
from mailer.zones import resolve_zone
from tests.conftest import SHIPPED_STEPS

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_series_has_four_sessions_at_gmt_minus_3() -> None:
    settings = load_settings(ROOT / "config", database_url="sqlite:///:memory:")
    starts = {s.id: s.start.astimezone(UTC) for s in settings.series.sessions}
    assert starts["africa-2021"].isoformat() == "2021-07-13T13:00:00+00:00"
    assert starts["caribbean-2021"].isoformat() == "2021-09-28T13:00:00+00:00"
    assert starts["asia-pacific-2021"].isoformat() == "2021-12-08T13:00:00+00:00"
    assert starts["latin-america-2022"].isoformat() == "2022-03-07T13:00:00+00:00"
    assert [s.name for s in settings.series.steps] == SHIPPED_STEPS


@pytest.mark.parametrize(
    ("text", "offset"),
    [("GMT-3", -3), ("UTC+05:30", 5.5), ("Etc/GMT+3", -3), ("utc-03:00", -3), ("GMT+13", 13)],
)
def test_fixed_offsets_mean_what_a_person_means(text: str, offset: float) -> None:
    from datetime import datetime

    moment = datetime(2021, 7, 13, 10, 0, tzinfo=resolve_zone(text))
    assert moment.utcoffset() == timedelta(hours=offset)


def test_offsets_days_are_calendar_hours_are_exact() -> None:
    assert parse_offset("-6w").calendar_days == -42
    assert parse_offset("-1h").exact == timedelta(hours=-1)
    assert parse_offset("+1d").calendar_days == 1
    with pytest.raises(ValueError):
        parse_offset("six weeks")


def _write_config(tmp_path: Path, replace: tuple[str, str]) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mailer.toml").write_text((ROOT / "config" / "mailer.toml").read_text())
    series = (ROOT / "config" / "series.toml").read_text()
    assert replace[0] in series
    (config / "series.toml").write_text(series.replace(replace[0], replace[1], 1))
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    return config


@pytest.mark.parametrize(
    ("old", "new", "key", "hint"),
    [
        ('zone = "GMT-3"', 'zone = "Mars/Olympus"', "sessions[0].zone", "IANA"),
        ('offset = "-6w"', 'offset = "six weeks"', "steps[0].offset", "'-6w'"),
        ('template = "follow-up"', 'template = "thanks"', "steps[5].template", "create it"),
    ],
)
def test_config_errors_name_file_key_and_fix(tmp_path: Path, old: str, new: str, key: str, hint: str) -> None:
    config = _write_config(tmp_path, (old, new))
    with pytest.raises(ConfigError) as caught:
        load_settings(config, database_url="sqlite:///:memory:")
    message = str(caught.value)
    assert "series.toml" in message
    assert caught.value.key == key
    assert hint in message


@pytest.mark.parametrize(
    ("file", "old", "new", "key", "hint"),
    [
        ("mailer.toml", "[smtp]", "[smpt]", "smpt", "did you mean `smtp`?"),
        (
            "mailer.toml",
            "[database]",
            "template_dir = 'templates/email'\n[database]",
            "template_dir",
            "did you mean `templates_dir`?",
        ),
        (
            "series.toml",
            "[[sessions]]\n",
            "[[sessions]]\ncanceled = true\n",
            "sessions[0].canceled",
            "did you mean `cancelled`?",
        ),
        (
            "series.toml",
            "[[steps]]\n",
            "[[steps]]\nsend_windw = '08:00-20:00'\n",
            "steps[0].send_windw",
            "did you mean `send_window`?",
        ),
        ("mailer.toml", "port = 587", "port = 99999", "smtp.port", "give 1-65535"),
        (
            "mailer.toml",
            'lease = "5m"',
            "lease = 300",
            "delivery.lease",
            "bad duration 300 (a bare number) (write it in quotes with its unit, e.g. '300s')",
        ),
        (
            "mailer.toml",
            "connections = 4",
            'connections = "4"',
            "smtp.connections",
            "expected int, got str '4' (write a whole number without quotes)",
        ),
        (
            "mailer.toml",
            "verify = true",
            'verify = "yes"',
            "smtp.verify",
            "expected bool, got str 'yes' (write true or false without quotes)",
        ),
    ],
)
def test_a_misspelt_or_impossible_setting_stops_loading(
    tmp_path: Path, file: str, old: str, new: str, key: str, hint: str
) -> None:
    """A typo must not be ignored: ``[smpt]`` would leave the relay unset and send everything to the capture
    server; ``canceled = true`` would leave the session running."""
    with pytest.raises(ConfigError) as caught:
        load_settings(_config_with(tmp_path, file, old, new), database_url="sqlite:///:memory:")
    assert caught.value.key == key and hint in str(caught.value), str(caught.value)


def _config_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """The shipped config folder copied under ``tmp_path`` with ``old`` replaced by ``new`` once in ``file``."""
    config = tmp_path / "config"
    config.mkdir()
    for name in ("mailer.toml", "series.toml"):
        text = (ROOT / "config" / name).read_text()
        if name == file:
            assert old in text
            text = text.replace(old, new, 1)
        (config / name).write_text(text)
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    return config


_ONE_LINE = "write it on one line without control characters: it goes into a message header"


@pytest.mark.parametrize(
    ("file", "old", "new", "key", "problem"),
    [
        (
            "series.toml",
            'title = "Parliamentary webinar on the Budapest Convention on Cybercrime: African Region"',
            r'title = "Webinar\r\nBcc: everyone@example.org"',
            "sessions[0].title",
            "control character U+000D in 'Webinar\\r\\nBcc: everyone@example.org'",
        ),
        (
            "series.toml",
            'title = "Parliamentary webinars on the Budapest Convention on Cybercrime"',
            r'title = "Webinars\nBcc: everyone@example.org"',
            "series.title",
            "control character U+000A in 'Webinars\\nBcc: everyone@example.org'",
        ),
        (
            "series.toml",
            'id = "budapest-convention-2021"',
            r'id = "budapest\tconvention"',
            "series.id",
            "control character U+0009 in 'budapest\\tconvention'",
        ),
        (
            "series.toml",
            '"Parliamentarians for Global Action",',
            r'"Parliamentarians\u2028for Global Action",',
            "series.organisers",
            "control character U+2028 in 'Parliamentarians\\u2028for Global Action'",
        ),
        (
            "mailer.toml",
            'name = "Budapest Convention webinars"',
            r'name = "Webinars\r\nBcc: everyone@example.org"',
            "sender.name",
            "control character U+000D in 'Webinars\\r\\nBcc: everyone@example.org'",
        ),
        (
            "mailer.toml",
            'address = "webinars@example.org"',
            r'address = "webinars@example.org\nBcc: everyone@example.org"',
            "sender.address",
            "control character U+000A in 'webinars@example.org\\nBcc: everyone@example.org'",
        ),
        (
            "mailer.toml",
            'name = "African Region"',
            r'name = "African\u0085Region"',
            "regions.africa.name",
            "control character U+0085 in 'African\\x85Region'",
        ),
    ],
)
def test_a_text_bound_for_a_header_refuses_control_characters(
    tmp_path: Path, file: str, old: str, new: str, key: str, problem: str
) -> None:
    """A line break in a title or sender name would end the header field and start another (RFC 5322 sec. 2.2):
    refused when the config is loaded, before any message is built."""
    with pytest.raises(ConfigError) as caught:
        load_settings(_config_with(tmp_path, file, old, new), database_url="sqlite:///:memory:")
    assert (Path(caught.value.path).name, caught.value.key) == (file, key)
    assert (caught.value.problem, caught.value.fix) == (problem, _ONE_LINE)


def test_an_environment_override_bound_for_a_header_refuses_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_REDIRECT_ALL_TO", "rehearsal@example.org\r\nBcc: everyone@example.org")
    with pytest.raises(ConfigError) as caught:
        load_settings(_config_with(tmp_path, "mailer.toml", "", ""), database_url="sqlite:///:memory:")
    assert (caught.value.path, caught.value.key, caught.value.fix) == (
        "$MAILER_REDIRECT_ALL_TO",
        "",
        _ONE_LINE,
    )
    assert (
        caught.value.problem
        == "control character U+000D in 'rehearsal@example.org\\r\\nBcc: everyone@example.org'"
    )


@pytest.mark.parametrize(
    ("old", "new", "key", "fix"),
    [
        (
            'poll_interval = "30s"',
            'poll_interval = "0s"',
            "delivery.poll_interval",
            "give a duration such as '30s'",
        ),
        ('lease = "5m"', 'lease = "0m"', "delivery.lease", "give a duration such as '5m'"),
        ('retry_base = "1m"', 'retry_base = "0h"', "delivery.retry_base", "give a duration such as '1m'"),
        ('session_idle = "2h"', 'session_idle = "0s"', "web.session_idle", "give a duration such as '2h'"),
        ('session_max = "12h"', 'session_max = "0m"', "web.session_max", "give a duration such as '12h'"),
    ],
)
def test_an_interval_that_paces_a_loop_or_a_lease_must_be_more_than_zero(
    tmp_path: Path, old: str, new: str, key: str, fix: str
) -> None:
    """A zero poll interval would spin; a zero lease would hand a message being sent to a second worker."""
    with pytest.raises(ConfigError) as caught:
        load_settings(_config_with(tmp_path, "mailer.toml", old, new), database_url="sqlite:///:memory:")
    assert (Path(caught.value.path).name, caught.value.key) == ("mailer.toml", key)
    assert (caught.value.problem, caught.value.fix) == ("must be more than 0", fix)


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    config = _config_with(
        tmp_path, "mailer.toml", "trusted_proxies = []", 'trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]'
    )
    web = load_settings(config, database_url="sqlite:///:memory:").web
    assert (web.trusted_proxies, web.session_idle, web.session_max) == (
        ("127.0.0.1", "10.0.0.0/8"),
        timedelta(hours=2),
        timedelta(hours=12),
    )
    (config / "mailer.toml").write_text(
        (config / "mailer.toml").read_text().replace('"10.0.0.0/8"', '"proxy.example.org"')
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, database_url="sqlite:///:memory:")
    assert (caught.value.key, caught.value.problem) == (
        "web.trusted_proxies",
        "not an IP address or network: 'proxy.example.org'",
    )


@pytest.mark.parametrize(
    "base_url", ["mailer.example.org", "127.0.0.1:8080", "ftp://mailer.example.org", "https://", "https:///x"]
)
def test_a_base_url_that_links_cannot_use_stops_loading(tmp_path: Path, base_url: str) -> None:
    """Every participant link and List-Unsubscribe is the base URL plus a path: without an http(s) scheme and
    a host they would be relative or unopenable ("mailer.example.org/u/..."), so the config is refused."""
    config = _config_with(
        tmp_path, "mailer.toml", 'base_url = "http://127.0.0.1:8080"', f'base_url = "{base_url}"'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, database_url="sqlite:///:memory:")
    assert (Path(caught.value.path).name, caught.value.key) == ("mailer.toml", "web.base_url")
    assert caught.value.problem == f"{base_url!r} is not an http:// or https:// address with a host"
    assert "https://mailer.example.org" in caught.value.fix


def test_a_base_url_override_that_links_cannot_use_stops_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_BASE_URL", "mailer.example.org")
    with pytest.raises(ConfigError) as caught:
        load_settings(_config_with(tmp_path, "mailer.toml", "", ""), database_url="sqlite:///:memory:")
    assert (caught.value.path, caught.value.key) == ("$MAILER_BASE_URL", "")
    monkeypatch.setenv("MAILER_BASE_URL", "https://mailer.example.org/webinars/")
    (tmp_path / "ok").mkdir()
    settings = load_settings(
        _config_with(tmp_path / "ok", "mailer.toml", "", ""), database_url="sqlite:///:memory:"
    )
    assert settings.web.base_url == "https://mailer.example.org/webinars"
