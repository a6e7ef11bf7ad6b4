"""The settings objects for ``mailer.toml``: sender, web pages, regions and the whole :class:`Settings`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from mailer.config.bounces import BounceSettings
from mailer.config.hooks import WebhookSettings
from mailer.config.series import Series, StepKind
from mailer.config.smtp import DkimSettings, SmtpSettings


@dataclass(frozen=True)
class Region:
    """A region: its contact list's defaults."""

    id: str
    name: str
    default_language: str
    default_zone: str
    fallback: tuple[str, ...]


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
class WebSettings:
    """The participants' and staff's web pages (``mailer web``; started by schedule.py when ``enabled``)."""

    enabled: bool
    host: str
    port: int
    base_url: str  # public URL prefix used in links inside messages, no trailing slash
    secret_env: str  # environment variable holding the signing key; else a key file under var/
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks whose X-Forwarded-* headers are believed
    session_idle: timedelta = timedelta(hours=2)  # a staff session ends after this long without a request
    session_max: timedelta = timedelta(hours=12)  # and this long after sign-in in any case

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
    bounces: BounceSettings = field(default_factory=BounceSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

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
