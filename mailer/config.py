"""Load and validate the TOML configuration into frozen settings objects.

Two files in the config directory (default ``./config``, or ``$MAILER_CONFIG``):

- ``mailer.toml``: database, SMTP, sender, languages, regions, lateness defaults;
- ``series.toml``: the series, its sessions and the timeline of steps.

Every problem raises :class:`mailer.errors.ConfigError` naming the file, the key and the fix.
Loaded once at start-up and passed down explicitly; nothing reads config at import time.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any

from mailer.errors import ConfigError
from mailer.zones import UnknownZoneError, canonical_zone_name, resolve_zone

_OFFSET = re.compile(r"^([+-])\s*(\d+)\s*(w|d|h|m)$")
_DURATION = re.compile(r"^(\d+)\s*(w|d|h|m|s)$")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


class StepKind(StrEnum):
    """What a step is for; also the template folder name by default."""

    INVITATION = "invitation"  # ask list members to register
    REMINDER = "reminder"  # tell registrants the session is coming
    FOLLOW_UP = "follow-up"  # thank participants after the session
    NOTICE = "notice"  # a change: date changed, cancelled


class Audience(StrEnum):
    """Who a step's wave goes to."""

    LIST = "list"  # every member of the session's region list
    LIST_UNREGISTERED = "list-unregistered"  # list members not registered (and not declined)
    REGISTRANTS = "registrants"  # contacts registered for the session
    INVITED = "invited"  # contacts who were sent an invitation for the session, or registered


class Security(StrEnum):
    """How the SMTP connection is protected."""

    NONE = "none"  # plain, for a local relay or capture server
    STARTTLS = "starttls"  # upgrade once after EHLO, usually port 587
    TLS = "tls"  # implicit TLS from the first byte, usually port 465


@dataclass(frozen=True)
class Offset:
    """A step's position relative to the session start.

    ``calendar_days`` keep the wall-clock time in the session's zone across DST;
    ``exact`` is an absolute duration. One of them is zero.
    """

    calendar_days: int
    exact: timedelta
    text: str

    @property
    def is_before(self) -> bool:
        return self.calendar_days < 0 or self.exact < timedelta(0)


@dataclass(frozen=True)
class Step:
    """A point on each session's timeline."""

    name: str
    kind: StepKind
    offset: Offset
    template: str
    audience: Audience
    auto: bool
    max_late: timedelta
    local_time: time | None = None  # send at this wall-clock time in the recipient's zone (day offsets only)
    send_window: tuple[time, time] | None = None  # recipient-local hours mail may go out: (opens, closes)


@dataclass(frozen=True)
class Session:
    """One webinar. ``start`` is aware, in the session's own zone (``zone_name``)."""

    id: str
    region: str
    title: str
    start: datetime
    zone_name: str
    duration: timedelta
    join_url: str
    languages: tuple[str, ...]
    agenda: tuple[str, ...]
    cancelled: bool = False

    @property
    def zone(self) -> tzinfo:
        return resolve_zone(self.zone_name)

    @property
    def end(self) -> datetime:
        return self.start + self.duration


@dataclass(frozen=True)
class Series:
    """The sessions sharing templates and a timeline."""

    id: str
    title: str
    organisers: tuple[str, ...]
    materials_url: str
    sessions: tuple[Session, ...]
    steps: tuple[Step, ...]

    def session(self, session_id: str) -> Session:
        for session in self.sessions:
            if session.id == session_id:
                return session
        known = ", ".join(s.id for s in self.sessions)
        raise KeyError(f"unknown session {session_id!r} (known: {known})")

    def step(self, step_name: str) -> Step:
        for step in self.steps:
            if step.name == step_name:
                return step
        known = ", ".join(s.name for s in self.steps)
        raise KeyError(f"unknown step {step_name!r} (known: {known})")


@dataclass(frozen=True)
class Region:
    """A region: its contact list's defaults."""

    id: str
    name: str
    default_language: str
    default_zone: str
    fallback: tuple[str, ...]


@dataclass(frozen=True)
class RateLimits:
    """At most this many messages in any sliding window of a second, minute, hour, day (0: no limit)."""

    per_second: int = 0
    per_minute: int = 0
    per_hour: int = 0
    per_day: int = 0

    def windows(self) -> tuple[tuple[float, int], ...]:
        """((window in seconds, limit), ...) for the limits that are set."""
        pairs = (
            (1.0, self.per_second),
            (60.0, self.per_minute),
            (3600.0, self.per_hour),
            (86400.0, self.per_day),
        )
        return tuple((seconds, limit) for seconds, limit in pairs if limit > 0)


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send. ``host`` empty means: start the local capture server.

    ``name`` is "default" for ``[smtp]`` and NAME for ``[smtp.servers.NAME]``. Timeouts are in seconds:
    ``connect_timeout`` covers TCP connect, greeting, EHLO, STARTTLS and AUTH; ``timeout`` each other
    command; ``data_timeout`` sending the message and waiting for the reply to its final dot.
    """

    host: str
    port: int
    security: Security
    username: str
    password_env: str
    connections: int
    messages_per_connection: int
    timeout: float  # seconds, per SMTP command (MAIL, RCPT, RSET, QUIT)
    name: str = "default"
    connect_timeout: float = 30.0  # seconds: connect, greeting, EHLO, STARTTLS, AUTH
    data_timeout: float = 120.0  # seconds: DATA, the message and the final reply
    ca_file: str = ""  # PEM bundle to verify the server's certificate with ("" = the system's CAs)
    verify: bool = True  # verify the certificate and host name (false only for a test relay)
    rate: RateLimits = RateLimits()
    max_rate_wait: float = 60.0  # seconds a message may wait for a rate-limit slot before it is deferred

    @property
    def password(self) -> str | None:
        """The password from the environment variable named by ``password_env`` (never from a file)."""
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class Sender:
    """RFC 5322 originator fields and the List-Unsubscribe mailbox."""

    name: str
    address: str
    reply_to: str
    unsubscribe_mailto: str
    redirect_all_to: str  # rehearsal: every message goes here instead (empty: off)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True)
class DkimSettings:
    """DKIM signing (RFC 6376) with a private key read from a file or an environment variable."""

    domain: str  # d= tag
    selector: str  # s= tag: the key is published at <selector>._domainkey.<domain>
    private_key_file: Path | None  # PEM (RSA or Ed25519 raw base64 key)
    private_key_env: str  # environment variable holding the PEM instead of a file ("" = none)
    headers: tuple[str, ...]  # header fields to sign

    def private_key(self) -> bytes:
        """The key's bytes; raises ConfigError when neither source has it."""
        if self.private_key_env and os.environ.get(self.private_key_env):
            return os.environ[self.private_key_env].encode()
        if self.private_key_file is not None and self.private_key_file.is_file():
            return self.private_key_file.read_bytes()
        raise ConfigError(
            "mailer.toml",
            "dkim.private_key_file",
            "no DKIM private key found",
            "point private_key_file at a PEM file or set the variable named by private_key_env",
        )


@dataclass(frozen=True)
class WebSettings:
    """The participants' and staff's web pages (``mailer web``; started by schedule.py when ``enabled``)."""

    enabled: bool
    host: str
    port: int
    base_url: str  # public URL prefix used in links inside messages, no trailing slash
    secret_env: str  # environment variable holding the signing key; else a key file under var/

    @property
    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) if self.secret_env else None


@dataclass(frozen=True)
class Settings:
    """Everything loaded from the config directory."""

    base_dir: Path
    config_dir: Path
    database_url: str
    smtp: SmtpSettings
    sender: Sender
    capture_dir: Path
    templates_dir: Path
    default_language: str
    languages: tuple[str, ...]
    regions: dict[str, Region]
    country_zones: dict[str, str]
    lease: timedelta
    retry_base: timedelta
    series: Series
    web: WebSettings
    poll_interval: timedelta = field(default=timedelta(seconds=30))
    smtp_servers: dict[str, SmtpSettings] = field(default_factory=dict)  # [smtp.servers.NAME]
    smtp_routes: dict[StepKind, str] = field(default_factory=dict)  # step kind -> server name
    dkim: DkimSettings | None = None

    def smtp_for(self, kind: StepKind | None) -> SmtpSettings:
        """The SMTP server a step kind is routed to (``[smtp.routes]``), else the default ``[smtp]``."""
        name = self.smtp_routes.get(kind) if kind is not None else None
        if name is None or name == "default":
            return self.smtp
        return self.smtp_servers[name]

    def region(self, region_id: str) -> Region:
        try:
            return self.regions[region_id]
        except KeyError:
            known = ", ".join(sorted(self.regions))
            raise KeyError(f"unknown region {region_id!r} (known: {known})") from None


def parse_offset(text: str) -> Offset:
    """Parse "-6w", "-21d", "-1h", "+90m": weeks and days are calendar days, hours and minutes exact.

    Raises ValueError on anything else.
    """
    match = _OFFSET.match(text.strip())
    if not match:
        raise ValueError(f"bad offset {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    amount, unit = int(match.group(2)), match.group(3)
    if unit in ("w", "d"):
        return Offset(sign * amount * (7 if unit == "w" else 1), timedelta(0), text.strip())
    return Offset(0, sign * timedelta(seconds=amount * _UNIT_SECONDS[unit]), text.strip())


def parse_clock_time(text: str) -> time:
    """Parse "HH:MM" (24-hour) into a naive wall-clock time; raise ValueError otherwise."""
    hours, _, minutes = text.strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"bad time {text!r}")
    return time(int(hours), int(minutes))


def parse_duration(text: str) -> timedelta:
    """Parse "3d", "12h", "90m", "30s" (positive) into a timedelta; raise ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class _Reader:
    """Typed access to one TOML table with errors that name the file and key."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = "") -> None:
        self.path = path
        self.data = data
        self.prefix = prefix
        self.asked: set[str] = set()  # every key the loader looked for, present or not
        self.children: list[_Reader] = []

    def keys(self) -> list[str]:
        """The table's keys, for tables whose keys are names (regions, servers, countries): all are known."""
        self.asked.update(self.data)
        return list(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def refuse_unknown(self) -> None:
        """Raise ConfigError for the first key no loader asked for (a typo such as ``[smpt]`` or ``canceled``
        would otherwise be ignored without a word), naming the closest known key."""
        for key in self.data:
            if key not in self.asked:
                close = difflib.get_close_matches(key, sorted(self.asked), n=1)
                fix = (
                    f"did you mean `{close[0]}`?"
                    if close
                    else f"known here: {', '.join(sorted(self.asked)) or 'none'}"
                )
                raise self.fail(key, "unknown setting", fix)
        for child in self.children:
            child.refuse_unknown()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(str(self.path), self.key(name), problem, fix)

    def get(self, name: str, kind: type, default: Any = ...) -> Any:
        self.asked.add(name)
        if name not in self.data:
            if default is ...:
                raise self.fail(name, "missing", f"add `{name} = ...`")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value

    def table(self, name: str) -> _Reader:
        value = self.get(name, dict, {})
        child = _Reader(self.path, value, f"{self.prefix}{name}.")
        self.children.append(child)
        return child

    def strings(self, name: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(name, list, default)
        if not all(isinstance(item, str) for item in value):
            raise self.fail(name, "expected a list of strings")
        return tuple(value)

    def zone(self, name: str, default: Any = ...) -> str:
        value = self.get(name, str, default)
        try:
            resolve_zone(value)
        except UnknownZoneError:
            raise self.fail(
                name, f"unknown time zone {value!r}", "use an IANA name like 'America/Sao_Paulo' or 'GMT-3'"
            ) from None
        return canonical_zone_name(value)

    def duration(self, name: str, default: Any = ...) -> Any:
        value = self.get(name, str, default)
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError:
            raise self.fail(
                name, f"bad duration {value!r}", "write e.g. '3d', '12h', '90m' or '30s'"
            ) from None


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            str(path), "", "file not found", "create it or point MAILER_CONFIG at the config folder"
        )
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}", "fix the syntax at that line") from None


def default_config_dir() -> Path:
    """``$MAILER_CONFIG`` if set, else ``./config``."""
    return Path(os.environ.get("MAILER_CONFIG", "config"))


def load_settings(config_dir: Path | None = None, *, database_url: str | None = None) -> Settings:
    """Load ``mailer.toml`` and ``series.toml`` from ``config_dir``.

    Relative paths in the files are relative to the config directory's parent (the project root).
    ``database_url`` (else ``$DATABASE_URL``, else the file's value) picks the store.
    Raises :class:`ConfigError` for any invalid or missing value.
    """
    config_dir = (config_dir or default_config_dir()).resolve()
    base_dir = config_dir.parent
    main_path = config_dir / "mailer.toml"
    main = _Reader(main_path, _read_toml(main_path))

    db = main.table("database")
    file_url = db.get("url", str, "sqlite:///var/mailer.db")
    url = database_url or os.environ.get("DATABASE_URL") or file_url
    url = _absolute_sqlite_url(url, base_dir)

    smtp_table = main.table("smtp")
    smtp = _smtp_server(smtp_table, None, base_dir)
    smtp_servers = {
        name: _smtp_server(smtp_table.table("servers").table(name), smtp, base_dir)
        for name in smtp_table.table("servers")
    }
    smtp_routes = _smtp_routes(smtp_table.table("routes"), smtp_servers)

    sender_table = main.table("sender")
    sender = Sender(
        name=sender_table.get("name", str),
        address=sender_table.get("address", str),
        reply_to=sender_table.get("reply_to", str, ""),
        unsubscribe_mailto=sender_table.get("unsubscribe_mailto", str),
        redirect_all_to=os.environ.get(
            "MAILER_REDIRECT_ALL_TO", sender_table.get("redirect_all_to", str, "")
        ),
    )
    for key in ("address", "unsubscribe_mailto"):
        if "@" not in getattr(sender, key):
            raise sender_table.fail(key, "not an email address")
    if sender.redirect_all_to and "@" not in sender.redirect_all_to:
        raise sender_table.fail(
            "redirect_all_to", "not an email address", 'give one address, or "" to switch off'
        )
    dkim = _dkim(main.table("dkim"), sender, base_dir)

    lang = main.table("languages")
    default_language = lang.get("default", str, "en")
    languages = lang.strings("offered", ("en",))

    regions: dict[str, Region] = {}
    regions_table = main.table("regions")
    for region_id in regions_table:
        reader = regions_table.table(region_id)
        regions[region_id] = Region(
            id=region_id,
            name=reader.get("name", str),
            default_language=reader.get("default_language", str, default_language),
            default_zone=reader.zone("default_zone"),
            fallback=reader.strings("fallback", ()),
        )

    country_zones_table = main.table("country_zones")
    country_zones = {code.upper(): country_zones_table.zone(code) for code in country_zones_table}

    web_table = main.table("web")
    web = WebSettings(
        enabled=web_table.get("enabled", bool, False),
        host=web_table.get("host", str, "127.0.0.1"),
        port=web_table.get("port", int, 8080),
        base_url=os.environ.get(
            "MAILER_BASE_URL", web_table.get("base_url", str, "http://127.0.0.1:8080")
        ).rstrip("/"),
        secret_env=web_table.get("secret_env", str, "MAILER_SECRET_KEY"),
    )
    delivery = main.table("delivery")
    templates_dir = base_dir / main.get("templates_dir", str, "templates/email")
    series_path = config_dir / "series.toml"
    series = _load_series(series_path, regions, templates_dir, main.table("lateness"))

    capture_dir = base_dir / main.table("capture").get("directory", str, "var/capture")
    lease, retry_base = delivery.duration("lease", "5m"), delivery.duration("retry_base", "1m")
    poll_interval = delivery.duration("poll_interval", "30s")
    main.refuse_unknown()
    return Settings(
        base_dir=base_dir,
        config_dir=config_dir,
        database_url=url,
        smtp=smtp,
        sender=sender,
        capture_dir=capture_dir,
        templates_dir=templates_dir,
        default_language=default_language,
        languages=languages,
        regions=regions,
        country_zones=country_zones,
        lease=lease,
        retry_base=retry_base,
        poll_interval=poll_interval,
        series=series,
        web=web,
        smtp_servers=smtp_servers,
        smtp_routes=smtp_routes,
        dkim=dkim,
    )


def _smtp_server(table: _Reader, base: SmtpSettings | None, base_dir: Path) -> SmtpSettings:
    """``[smtp]`` (``base`` None; $SMTP_HOST and $SMTP_PORT override) or ``[smtp.servers.NAME]``, whose
    unset keys default to ``[smtp]``'s. Raises ConfigError naming the key and the fix."""
    known = {
        "host",
        "port",
        "security",
        "username",
        "password_env",
        "connections",
        "messages_per_connection",
        "timeout",
        "connect_timeout",
        "data_timeout",
        "ca_file",
        "verify",
        "max_per_second",
        "max_per_minute",
        "max_per_hour",
        "max_per_day",
        "max_rate_wait",
        "servers",
        "routes",
    }
    for key in table.data:
        if key not in known or (base is not None and key in ("servers", "routes")):
            raise table.fail(
                key, "unknown SMTP setting", f"use one of {', '.join(sorted(known - {'servers', 'routes'}))}"
            )

    def get(key: str, kind: type, default: Any) -> Any:
        return table.get(key, kind, getattr(base, key) if base is not None else default)

    security_text = table.get("security", str, base.security.value if base else "starttls")
    try:
        security = Security(security_text)
    except ValueError:
        raise table.fail(
            "security", f"unknown value {security_text!r}", "use none, starttls or tls"
        ) from None
    if base is None:
        host = os.environ.get("SMTP_HOST", table.get("host", str, ""))
        port_text = os.environ.get("SMTP_PORT", "")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            raise ConfigError("$SMTP_PORT", "", f"not a port number: {port_text!r}", "give 1-65535, e.g. 587")
        file_port = table.get("port", int, 587)
        port = int(port_text) if port_text else file_port
        name = "default"
        if not 0 < port < 65536:
            raise table.fail("port", f"not a port number: {port}", "give 1-65535, e.g. 587")
    else:
        host = table.get("host", str)
        port = table.get("port", int, {Security.TLS: 465, Security.STARTTLS: 587}.get(security, 25))
        name = table.prefix.removeprefix("smtp.servers.").rstrip(".")
        if not 0 < port < 65536:
            raise table.fail("port", f"not a port number: {port}", "give 1-65535, e.g. 587")
        if not host:
            raise table.fail("host", "empty", "a named server needs a host name")
    limits = {}
    for unit in ("second", "minute", "hour", "day"):
        limits[f"per_{unit}"] = table.get(
            f"max_per_{unit}", int, getattr(base.rate, f"per_{unit}") if base else 0
        )
        if limits[f"per_{unit}"] < 0:
            raise table.fail(f"max_per_{unit}", "negative", "use 0 for no limit")
    ca_file = get("ca_file", str, "")
    if "ca_file" in table.data and ca_file:
        path = Path(ca_file) if Path(ca_file).is_absolute() else base_dir / ca_file
        if not path.is_file():
            raise table.fail("ca_file", f"no file {path}", "point it at a PEM bundle of CA certificates")
        ca_file = str(path)
    smtp = SmtpSettings(
        host=host,
        port=port,
        security=security,
        username=get("username", str, ""),
        password_env=get("password_env", str, "SMTP_PASSWORD"),
        connections=get("connections", int, 4),
        messages_per_connection=get("messages_per_connection", int, 500),
        timeout=get("timeout", float, 30.0),
        name=name,
        connect_timeout=get("connect_timeout", float, 30.0),
        data_timeout=get("data_timeout", float, 120.0),
        ca_file=ca_file,
        verify=get("verify", bool, True),
        rate=RateLimits(**limits),
        max_rate_wait=get("max_rate_wait", float, 60.0),
    )
    if smtp.connections < 1:
        raise table.fail("connections", "must be at least 1")
    if smtp.messages_per_connection < 1:
        raise table.fail("messages_per_connection", "must be at least 1")
    for key in ("timeout", "connect_timeout", "data_timeout"):
        if getattr(smtp, key) <= 0:
            raise table.fail(key, "must be more than 0 seconds")
    if smtp.security is Security.TLS and smtp.port == 587:
        raise table.fail("port", "implicit TLS on port 587", "use port 465 with security = 'tls'")
    if smtp.security is Security.STARTTLS and smtp.port == 465:
        raise table.fail(
            "port", "STARTTLS on port 465 (implicit TLS)", "use security = 'tls' on 465 or port 587"
        )
    if smtp.security is Security.NONE and smtp.username:
        raise table.fail(
            "username",
            "a password would cross the network in clear",
            "use security = 'starttls' or 'tls' with a login",
        )
    return smtp


def _smtp_routes(table: _Reader, servers: dict[str, SmtpSettings]) -> dict[StepKind, str]:
    """``[smtp.routes]``: step kind -> "default" or a ``[smtp.servers.NAME]``."""
    routes: dict[StepKind, str] = {}
    kinds = ", ".join(k.value for k in StepKind)
    names = ", ".join(["default", *servers])
    for key in table.data:
        try:
            kind = StepKind(key)
        except ValueError:
            raise table.fail(key, "not a step kind", f"use one of {kinds}") from None
        name = table.get(key, str)
        if name != "default" and name not in servers:
            raise table.fail(
                key, f"no SMTP server named {name!r}", f"add [smtp.servers.{name}] or use one of {names}"
            )
        routes[kind] = name
    return routes


def _dkim(table: _Reader, sender: Sender, base_dir: Path) -> DkimSettings | None:
    """``[dkim]``: signing is on when ``selector`` is set."""
    selector = table.get("selector", str, "")
    if not selector:
        return None
    key_file_text = table.get("private_key_file", str, "")
    key_env = table.get("private_key_env", str, "")
    if not key_file_text and not key_env:
        raise table.fail(
            "private_key_file",
            "DKIM selector set but no key",
            "set private_key_file (PEM) or private_key_env (variable holding the PEM)",
        )
    key_file = None
    if key_file_text:
        key_file = Path(key_file_text) if Path(key_file_text).is_absolute() else base_dir / key_file_text
        if not key_file.is_file() and not (key_env and os.environ.get(key_env)):
            raise table.fail("private_key_file", f"no file {key_file}", "create the key or fix the path")
    headers = table.strings(
        "headers",
        (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Reply-To",
            "MIME-Version",
            "Content-Type",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
        ),
    )
    if "from" not in {h.lower() for h in headers}:
        raise table.fail("headers", "must include From (RFC 6376 sec. 5.4)", 'add "From"')
    return DkimSettings(table.get("domain", str, sender.domain), selector, key_file, key_env, headers)


def _absolute_sqlite_url(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        return prefix + str(base_dir / url[len(prefix) :])
    return url


_DEFAULT_MAX_LATE = {
    StepKind.INVITATION: "3d",
    StepKind.REMINDER: "12h",
    StepKind.FOLLOW_UP: "7d",
    StepKind.NOTICE: "30d",
}


def _load_series(path: Path, regions: dict[str, Region], templates_dir: Path, lateness: _Reader) -> Series:
    root = _Reader(path, _read_toml(path))
    head = root.table("series")
    max_late_by_kind = {kind: lateness.duration(kind.value, _DEFAULT_MAX_LATE[kind]) for kind in StepKind}

    steps: list[Step] = []
    for index, raw in enumerate(root.get("steps", list)):
        reader = _Reader(path, raw, f"steps[{index}].")
        name = reader.get("name", str)
        kind_text = reader.get("kind", str)
        try:
            kind = StepKind(kind_text)
        except ValueError:
            options = ", ".join(k.value for k in StepKind)
            raise reader.fail("kind", f"unknown step kind {kind_text!r}", f"use one of {options}") from None
        offset_text = reader.get("offset", str)
        try:
            offset = parse_offset(offset_text)
        except ValueError:
            raise reader.fail(
                "offset",
                f"bad offset {offset_text!r}",
                "write a sign, a number and w/d/h/m, e.g. '-6w' or '+1d'",
            ) from None
        audience_text = reader.get("audience", str)
        try:
            audience = Audience(audience_text)
        except ValueError:
            options = ", ".join(a.value for a in Audience)
            raise reader.fail(
                "audience", f"unknown audience {audience_text!r}", f"use one of {options}"
            ) from None
        template = reader.get("template", str, kind.value)
        if not (templates_dir / template).is_dir():
            raise reader.fail(
                "template",
                f"no template folder {templates_dir / template}",
                "create it, name an existing one, or set templates_dir in mailer.toml (relative paths there start "
                "at the config folder's parent)",
            )
        local_time = send_window = None
        local_text = reader.get("local_time", str, "")
        if local_text:
            try:
                local_time = parse_clock_time(local_text)
            except ValueError:
                raise reader.fail(
                    "local_time", f"bad time {local_text!r}", "write 24-hour 'HH:MM', e.g. '09:00'"
                ) from None
            if not offset.calendar_days:
                raise reader.fail("local_time", "needs an offset in days or weeks", "e.g. offset = '-2d'")
        window_text = reader.get("send_window", str, "")
        if window_text:
            try:
                opens, closes = (parse_clock_time(part) for part in window_text.split("-"))
            except ValueError:
                raise reader.fail(
                    "send_window", f"bad window {window_text!r}", "write 'HH:MM-HH:MM', e.g. '08:00-20:00'"
                ) from None
            if opens >= closes:
                raise reader.fail("send_window", "opens after it closes", "write the earlier time first")
            send_window = (opens, closes)
        if any(step.name == name for step in steps):
            raise reader.fail("name", f"duplicate step name {name!r}", "step names must be unique")
        steps.append(
            Step(
                name=name,
                kind=kind,
                offset=offset,
                template=template,
                audience=audience,
                auto=reader.get("auto", bool, kind is not StepKind.INVITATION),
                max_late=reader.duration("max_late", None) or max_late_by_kind[kind],
                local_time=local_time,
                send_window=send_window,
            )
        )
        reader.refuse_unknown()

    sessions: list[Session] = []
    for index, raw in enumerate(root.get("sessions", list)):
        reader = _Reader(path, raw, f"sessions[{index}].")
        session_id = reader.get("id", str)
        region = reader.get("region", str)
        if region not in regions:
            raise reader.fail("region", f"unknown region {region!r}", "add it under [regions] in mailer.toml")
        zone_name = reader.zone("zone")
        start_text = reader.get("start", str)
        try:
            naive = datetime.fromisoformat(start_text)
        except ValueError:
            raise reader.fail(
                "start", f"bad date-time {start_text!r}", "write e.g. '2021-07-13T10:00'"
            ) from None
        if naive.tzinfo is not None:
            raise reader.fail(
                "start", "carries its own offset", "give the local time and put the zone in `zone`"
            )
        sessions.append(
            Session(
                id=session_id,
                region=region,
                title=reader.get("title", str),
                start=naive.replace(tzinfo=resolve_zone(zone_name)),
                zone_name=zone_name,
                duration=timedelta(minutes=reader.get("duration_minutes", int)),
                join_url=reader.get("join_url", str),
                languages=reader.strings("languages", ("en",)),
                agenda=reader.strings("agenda", ()),
                cancelled=reader.get("cancelled", bool, False),
            )
        )
        reader.refuse_unknown()
    if len({s.id for s in sessions}) != len(sessions):
        raise root.fail("sessions", "duplicate session id", "give each session a unique id")

    series = Series(
        id=head.get("id", str),
        title=head.get("title", str),
        organisers=head.strings("organisers", ()),
        materials_url=head.get("materials_url", str, ""),
        sessions=tuple(sessions),
        steps=tuple(steps),
    )
    root.refuse_unknown()
    return series


__all__ = [
    "Audience",
    "DkimSettings",
    "Offset",
    "RateLimits",
    "Region",
    "Security",
    "Sender",
    "Series",
    "Session",
    "Settings",
    "SmtpSettings",
    "Step",
    "StepKind",
    "WebSettings",
    "load_settings",
    "parse_duration",
    "parse_offset",
]
