"""Load and validate the TOML configuration into frozen settings objects.

Two files in the config directory (default ``./config``, or ``$MAILER_CONFIG``):

- ``mailer.toml``: database, SMTP, sender, languages, regions, lateness defaults;
- ``series.toml``: the series, its sessions and the timeline of steps.

Every problem raises :class:`mailer.errors.ConfigError` naming the file, the key and the fix.
Loaded once at start-up and passed down explicitly; nothing reads config at import time.

The modules, lower first (each imports only those above it):

    times.py      offsets ("-6w"), durations ("30s"), clock times ("09:00")
    reader.py     the strict TOML table reader: typed values, unknown keys refused with a suggestion
    texts.py      per-language session texts ([sessions.texts.<language>]) and their fallback
    series.py     series.toml: Series, Session, Step, StepKind, Audience
    smtp.py       [smtp], [smtp.servers.NAME], [smtp.routes], [dkim]
    providers.py  [bounces.webhooks.PROVIDER]: the sending providers' bounce and complaint webhooks
    bounces.py    [bounces], [bounces.imap]: return path, soft-bounce rule, bounce mailbox
    hooks.py      [webhooks]: secrets' variables, replay tolerance, Zoom webinar -> session
    settings.py   Sender, WebSettings, Region, Settings
    load.py       load_settings: both files, environment overrides
    links.py      check_public_links: a real relay needs a public https web.base_url (start-up check)
"""

from __future__ import annotations

from mailer.config.bounces import BounceSettings, ImapSettings
from mailer.config.hooks import WebhookSettings
from mailer.config.links import check_public_links
from mailer.config.load import default_config_dir, load_settings
from mailer.config.providers import ProviderWebhook, ProviderWebhooks
from mailer.config.series import Audience, Series, Session, Step, StepKind
from mailer.config.settings import Region, Sender, Settings, WebSettings
from mailer.config.smtp import DkimSettings, RateLimits, Security, SmtpSettings
from mailer.config.times import Offset, parse_clock_time, parse_duration, parse_offset

__all__ = [
    "Audience",
    "BounceSettings",
    "DkimSettings",
    "ImapSettings",
    "Offset",
    "ProviderWebhook",
    "ProviderWebhooks",
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
    "WebhookSettings",
    "check_public_links",
    "default_config_dir",
    "load_settings",
    "parse_clock_time",
    "parse_duration",
    "parse_offset",
]
