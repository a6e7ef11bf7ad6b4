"""``[bounces]``: the signed return path (VERP), the soft-bounce rule and the bounce mailbox (IMAP)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from mailer.config.providers import ProviderWebhooks, read_provider_webhooks
from mailer.config.reader import TableReader
from mailer.config.smtp import Security


@dataclass(frozen=True)
class ImapSettings:
    """The bounce mailbox the service polls (``[bounces.imap]``). Timeouts in seconds; the password is only
    ever read from the environment variable named by ``password_env``."""

    host: str
    port: int = 993
    security: Security = (
        Security.TLS
    )  # tls: implicit TLS (993); starttls: upgrade on 143; none: loopback only
    username: str = ""
    password_env: str = "BOUNCE_IMAP_PASSWORD"
    folder: str = "INBOX"
    processed_folder: str = "Processed"  # handled reports are moved here
    unparsed_folder: str = "Unparsed"  # reports nothing could read are kept here
    interval: timedelta = timedelta(minutes=5)
    ca_file: str = ""  # PEM bundle to verify the server with ("": the system's CAs)
    verify: bool = True
    timeout: float = 60.0

    @property
    def password(self) -> str | None:
        """The password from ``$<password_env>``, or None when unset."""
        return os.environ.get(self.password_env) if self.password_env else None

    @property
    def source(self) -> str:
        """``imap://user@host:port/INBOX``, naming where a report came from."""
        return f"imap://{self.username}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True)
class BounceSettings:
    """``[bounces]``: the signed return path (VERP), the soft-bounce rule and the mailbox to poll.

    ``return_path`` ``"bounces@bounce.example.org"`` sends each message with the envelope sender
    ``bounces+<token>@bounce.example.org``; ``""`` keeps the sender's address. ``soft_limit`` soft bounces
    spread over at least ``soft_period`` suppress a contact. ``imap`` None: no polling. ``webhooks``: the
    sending providers whose webhooks are accepted (mailer.config.providers).
    """

    return_path: str = ""
    soft_limit: int = 3
    soft_period: timedelta = timedelta(days=7)
    imap: ImapSettings | None = None
    webhooks: ProviderWebhooks = field(default_factory=ProviderWebhooks)


def read_bounces(table: TableReader) -> BounceSettings:
    """``[bounces]``, ``[bounces.imap]`` and ``[bounces.webhooks]``; raises ConfigError naming the key and the
    fix."""
    return_path = table.get("return_path", str, "").strip()
    local, at, domain = return_path.rpartition("@")
    if return_path and (not at or not local or not domain or "+" in local):
        raise table.fail(
            "return_path", f"not a plain address: {return_path!r}", 'e.g. "bounces@bounce.example.org", or ""'
        )
    soft_limit = table.get("soft_limit", int, 3)
    if soft_limit < 1:
        raise table.fail("soft_limit", f"{soft_limit}: at least 1")
    soft_period = table.interval("soft_period", "7d")
    imap_table = table.table("imap")
    host = imap_table.get("host", str, "")
    imap = None
    if host:
        security_text = imap_table.get("security", str, "tls")
        try:
            security = Security(security_text)
        except ValueError:
            raise imap_table.fail(
                "security", f"unknown value {security_text!r}", "use tls, starttls or none"
            ) from None
        port = imap_table.get("port", int, 993 if security is Security.TLS else 143)
        if not 0 < port < 65536:
            raise imap_table.fail("port", f"not a port number: {port}", "give 1-65535, e.g. 993")
        username = imap_table.get("username", str, "")
        if not username:
            raise imap_table.fail("username", "empty", "the bounce mailbox's login name")
        imap = ImapSettings(
            host=host,
            port=port,
            security=security,
            username=username,
            password_env=imap_table.get("password_env", str, "BOUNCE_IMAP_PASSWORD"),
            folder=imap_table.get("folder", str, "INBOX"),
            processed_folder=imap_table.get("processed_folder", str, "Processed"),
            unparsed_folder=imap_table.get("unparsed_folder", str, "Unparsed"),
            interval=imap_table.interval("interval", "5m"),
            ca_file=imap_table.get("ca_file", str, ""),
            verify=imap_table.get("verify", bool, True),
        )
    else:
        imap_table.asked.update(imap_table.data)  # a switched-off mailbox may keep its other keys
    return BounceSettings(
        return_path, soft_limit, soft_period, imap, read_provider_webhooks(table.table("webhooks"))
    )
