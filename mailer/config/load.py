"""Load ``mailer.toml`` and ``series.toml`` into :class:`Settings`, with the environment's overrides.

``$MAILER_CONFIG`` names the config folder; ``$DATABASE_URL``, ``$SMTP_HOST``, ``$SMTP_PORT``,
``$SMTP_SECURITY``, ``$MAILER_REDIRECT_ALL_TO`` and ``$MAILER_BASE_URL`` override the files' values.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from mailer.config.bounces import read_bounces
from mailer.config.hooks import read_webhooks
from mailer.config.reader import TableReader, read_toml, refuse_control_characters
from mailer.config.series import load_series
from mailer.config.settings import Region, Sender, Settings, WebSettings
from mailer.config.smtp import read_dkim, read_smtp_routes, read_smtp_server
from mailer.errors import ConfigError


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
    main = TableReader(main_path, read_toml(main_path))

    db = main.table("database")
    file_url = db.get("url", str, "sqlite:///var/mailer.db")
    url = database_url or os.environ.get("DATABASE_URL") or file_url
    url = _absolute_sqlite_url(url, base_dir)

    smtp_table = main.table("smtp")
    smtp = read_smtp_server(smtp_table, None, base_dir)
    smtp_servers = {
        name: read_smtp_server(smtp_table.table("servers").table(name), smtp, base_dir)
        for name in smtp_table.table("servers")
    }
    smtp_routes = read_smtp_routes(smtp_table.table("routes"), smtp_servers)

    sender_table = main.table("sender")
    sender = Sender(
        name=sender_table.header_text("name"),
        address=sender_table.header_text("address"),
        reply_to=sender_table.header_text("reply_to", ""),
        unsubscribe_mailto=sender_table.header_text("unsubscribe_mailto"),
        redirect_all_to=_header_override(
            "MAILER_REDIRECT_ALL_TO", sender_table.header_text("redirect_all_to", "")
        ),
    )
    for key in ("address", "unsubscribe_mailto"):
        if "@" not in getattr(sender, key):
            raise sender_table.fail(key, "not an email address")
    if sender.redirect_all_to and "@" not in sender.redirect_all_to:
        raise sender_table.fail(
            "redirect_all_to", "not an email address", 'give one address, or "" to switch off'
        )
    dkim = read_dkim(main.table("dkim"), sender.domain, base_dir)

    lang = main.table("languages")
    default_language = lang.get("default", str, "en")
    languages = lang.strings("offered", ("en",))

    regions: dict[str, Region] = {}
    regions_table = main.table("regions")
    for region_id in regions_table:
        reader = regions_table.table(region_id)
        regions[region_id] = Region(
            id=region_id,
            name=reader.header_text("name"),
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
        base_url=_base_url(web_table),
        secret_env=web_table.get("secret_env", str, "MAILER_SECRET_KEY"),
        trusted_proxies=_networks(web_table, "trusted_proxies"),
        session_idle=web_table.interval("session_idle", "2h"),
        session_max=web_table.interval("session_max", "12h"),
    )
    delivery = main.table("delivery")
    templates_dir = base_dir / main.get("templates_dir", str, "templates/email")
    series_path = config_dir / "series.toml"
    series = load_series(series_path, regions, templates_dir, main.table("lateness"))

    capture_dir = base_dir / main.table("capture").get("directory", str, "var/capture")
    lease, retry_base = delivery.interval("lease", "5m"), delivery.interval("retry_base", "1m")
    poll_interval = delivery.interval("poll_interval", "30s")
    bounces = read_bounces(main.table("bounces"))
    webhooks = read_webhooks(main.table("webhooks"), {session.id for session in series.sessions})
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
        bounces=bounces,
        webhooks=webhooks,
    )


def _header_override(variable: str, file_value: str) -> str:
    """``$variable`` when set, else ``file_value``; a text that reaches a message header (List-Unsubscribe, To),
    so ConfigError naming the variable when it holds a control character."""
    if variable not in os.environ:
        return file_value
    refuse_control_characters(f"${variable}", "", os.environ[variable])
    return os.environ[variable]


def _base_url(table: TableReader) -> str:
    """``web.base_url`` (or ``$MAILER_BASE_URL``) without its trailing slash: every participant link is it plus
    a path, so ConfigError unless it is an http:// or https:// address with a host."""
    value = _header_override("MAILER_BASE_URL", table.header_text("base_url", "http://127.0.0.1:8080"))
    try:
        parts = urlsplit(value)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # e.g. an unclosed "[" or a port that is not a number
        usable = False
    if usable:
        return value.rstrip("/")
    problem = f"{value!r} is not an http:// or https:// address with a host"
    fix = "give the address participants open, e.g. https://mailer.example.org"
    if "MAILER_BASE_URL" in os.environ:
        raise ConfigError("$MAILER_BASE_URL", "", problem, fix)
    raise table.fail("base_url", problem, fix)


def _absolute_sqlite_url(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        return prefix + str(base_dir / url[len(prefix) :])
    return url


def _networks(table: TableReader, name: str) -> tuple[str, ...]:
    """A list of IP addresses or CIDR networks (``web.trusted_proxies``); ConfigError naming a bad one."""
    values = table.strings(name, ())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise table.fail(
                name, f"not an IP address or network: {value!r}", 'give e.g. ["127.0.0.1", "10.0.0.0/8"]'
            ) from None
    return values
