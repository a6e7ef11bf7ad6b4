"""``[smtp]``, ``[smtp.servers.NAME]``, ``[smtp.routes]`` and ``[dkim]`` of ``mailer.toml``: where and how
messages leave, at what rate, signed with which key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mailer.config.reader import TableReader
from mailer.config.series import StepKind
from mailer.errors import ConfigError


class Security(StrEnum):
    """How the SMTP connection is protected."""

    NONE = "none"  # plain, for a local relay or capture server
    STARTTLS = "starttls"  # upgrade once after EHLO, usually port 587
    TLS = "tls"  # implicit TLS from the first byte, usually port 465


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
    rate_limit_storage: str = (
        ""  # where the limits are counted: "" in this process, or "redis://host:port/db"
    )
    circuit_failures: int = 3  # consecutive failed connections after which the relay counts as unreachable
    circuit_backoff: float = 30.0  # seconds to the first probe of an unreachable relay; doubles, with jitter
    circuit_backoff_max: float = 600.0  # seconds: the longest wait between probes

    @property
    def password(self) -> str | None:
        """The password from the environment variable named by ``password_env`` (never from a file)."""
        return os.environ.get(self.password_env) if self.password_env else None


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


def read_smtp_server(table: TableReader, base: SmtpSettings | None, base_dir: Path) -> SmtpSettings:
    """``[smtp]`` (``base`` None; $SMTP_HOST, $SMTP_PORT and $SMTP_SECURITY override) or ``[smtp.servers.NAME]``, whose
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
        "rate_limit_storage",
        "circuit_failures",
        "circuit_backoff",
        "circuit_backoff_max",
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
    if base is None and os.environ.get("SMTP_SECURITY"):
        security_text = os.environ["SMTP_SECURITY"].strip().lower()
        if security_text not in {member.value for member in Security}:
            raise ConfigError(
                "$SMTP_SECURITY",
                "",
                f"unknown value {os.environ['SMTP_SECURITY']!r}",
                "use none, starttls or tls",
            )
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
        file_port = table.get("port", int, 465 if security is Security.TLS else 587)
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
        rate_limit_storage=get("rate_limit_storage", str, ""),
        circuit_failures=get("circuit_failures", int, 3),
        circuit_backoff=get("circuit_backoff", float, 30.0),
        circuit_backoff_max=get("circuit_backoff_max", float, 600.0),
    )
    if smtp.connections < 1:
        raise table.fail("connections", "must be at least 1")
    if smtp.messages_per_connection < 1:
        raise table.fail("messages_per_connection", "must be at least 1")
    for key in ("timeout", "connect_timeout", "data_timeout"):
        if getattr(smtp, key) <= 0:
            raise table.fail(key, "must be more than 0 seconds")
    if smtp.circuit_failures < 1:
        raise table.fail("circuit_failures", "must be at least 1")
    if smtp.circuit_backoff <= 0:
        raise table.fail("circuit_backoff", "must be more than 0 seconds")
    if smtp.circuit_backoff_max < smtp.circuit_backoff:
        raise table.fail(
            "circuit_backoff_max", "shorter than circuit_backoff", "give at least circuit_backoff"
        )
    if smtp.rate_limit_storage and not smtp.rate_limit_storage.startswith(
        ("redis://", "rediss://", "memory://")
    ):
        raise table.fail(
            "rate_limit_storage",
            f"unsupported storage {smtp.rate_limit_storage!r}",
            'use "" (this process) or a Redis URL such as "redis://127.0.0.1:6379/0"',
        )
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


def read_smtp_routes(table: TableReader, servers: dict[str, SmtpSettings]) -> dict[StepKind, str]:
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


def read_dkim(table: TableReader, sender_domain: str, base_dir: Path) -> DkimSettings | None:
    """``[dkim]``: signing is on when ``selector`` is set; ``domain`` defaults to ``sender_domain``.

    Raises ConfigError naming the key and the fix."""
    selector = table.header_text("selector", "")
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
    headers = table.header_strings(
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
    return DkimSettings(table.header_text("domain", sender_domain), selector, key_file, key_env, headers)
