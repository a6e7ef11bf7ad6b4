"""The start-up check that participants can open the links in the messages a real relay sends.

Every message links to ``web.base_url`` (unsubscribe, RSVP, ``List-Unsubscribe``). An ``http://`` or a
loopback address there (``http://127.0.0.1:8080``, the shipped default) is right for the capture server and
local tests, but through a relay on another machine it reaches participants who cannot open it, and spam
filters score plain-http and numeric-host links. A rehearsal (``sender.redirect_all_to`` /
``$MAILER_REDIRECT_ALL_TO``: every message goes to one address) is exempt.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from mailer.config.settings import Settings
from mailer.errors import ConfigError


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``, RFC 6761), 127.0.0.0/8, ``::1`` and the unspecified
    addresses 0.0.0.0 and ``::``: a host name no other machine can reach."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def relay_hosts(settings: Settings) -> list[str]:
    """``host:port`` of each configured SMTP server on another machine (empty when mail goes to the local
    capture server or a loopback test server)."""
    servers = [settings.smtp, *settings.smtp_servers.values()]
    return [f"{smtp.host}:{smtp.port}" for smtp in servers if smtp.host and not is_loopback_host(smtp.host)]


def check_public_links(settings: Settings) -> None:
    """Refuse to send through a relay on another machine while ``web.base_url`` is plain http or a loopback
    address, unless the run is a rehearsal (``redirect_all_to`` set).

    Raises ConfigError naming ``web.base_url``, the relay and the fix.
    """
    relays = relay_hosts(settings)
    if not relays or settings.sender.redirect_all_to:
        return
    base_url = settings.web.base_url
    parts = urlsplit(base_url)
    if parts.scheme == "https" and not is_loopback_host(parts.hostname or ""):
        return
    why = "a loopback address" if is_loopback_host(parts.hostname or "") else "not https"
    raise ConfigError(
        str(settings.config_dir / "mailer.toml"),
        "web.base_url",
        f"{base_url!r} is {why}, but mail goes out through {', '.join(relays)}: every message would link"
        f" participants to {base_url}/..., which they cannot open and spam filters score",
        "set [web] base_url or $MAILER_BASE_URL to the public https address of the pages, e.g."
        " https://mailer.example.org; for a rehearsal set $MAILER_REDIRECT_ALL_TO to your own address",
    )
