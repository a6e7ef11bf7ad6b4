"""``[webhooks]``: registrations pushed by a webinar platform (generic JSON and Zoom).

Secrets are never in the file: the file names the environment variables that hold them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from mailer.config.reader import TableReader


@dataclass(frozen=True)
class WebhookSettings:
    """Where each platform's shared secret is read from, how old a signed request may be, and which Zoom
    webinar is which session.

    ``tolerance``: a request whose signed timestamp is further than this from now (either way) is refused
    as a replay. ``zoom_webinars``: Zoom webinar id (digits, as text) -> session id.
    """

    secret_env: str = "MAILER_WEBHOOK_SECRET"
    zoom_secret_env: str = "ZOOM_WEBHOOK_SECRET_TOKEN"
    tolerance: timedelta = timedelta(minutes=5)
    zoom_webinars: dict[str, str] = field(default_factory=dict)

    @property
    def secret(self) -> str | None:
        """The generic endpoint's secret from the environment, or None (the endpoint then refuses all)."""
        return os.environ.get(self.secret_env) or None

    @property
    def zoom_secret(self) -> str | None:
        """Zoom's "Secret Token" from the environment, or None (the Zoom endpoint then refuses all)."""
        return os.environ.get(self.zoom_secret_env) or None


def read_webhooks(table: TableReader, session_ids: set[str]) -> WebhookSettings:
    """``[webhooks]`` -> :class:`WebhookSettings`; ConfigError for a webinar mapped to an unknown session."""
    webinars_table = table.table("zoom_webinars")
    webinars: dict[str, str] = {}
    for webinar in webinars_table:
        session_id = webinars_table.get(webinar, str)
        if session_id not in session_ids:
            raise webinars_table.fail(
                webinar, f"unknown session {session_id!r}", f"use one of {', '.join(sorted(session_ids))}"
            )
        webinars[webinar.replace(" ", "")] = session_id
    return WebhookSettings(
        secret_env=table.get("secret_env", str, "MAILER_WEBHOOK_SECRET"),
        zoom_secret_env=table.get("zoom_secret_env", str, "ZOOM_WEBHOOK_SECRET_TOKEN"),
        tolerance=table.interval("tolerance", "5m"),
        zoom_webinars=webinars,
    )
