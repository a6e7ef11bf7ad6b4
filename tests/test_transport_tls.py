"""TLS (STARTTLS once, implicit TLS, verification), login from the environment, routing, rate limits, DKIM."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailer.config import DkimSettings, RateLimits, Security, SmtpSettings, StepKind, load_settings
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.pool import SmtpPool, starttls_not_offered, tls_context
from mailer.delivery.ratelimit import RateLimited, RateLimiter
from mailer.delivery.replies import Reply
from mailer.delivery.transport import SmtpRouter
from mailer.errors import ConfigError
from mailer.store.models import MessageStatus
from tests.certificates import self_signed_certificate, server_context
from tests.smtp_faults import Faults, fault_server

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = b"From: webinars@example.org\r\nTo: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def _smtp(server: object, **changes: object) -> SmtpSettings:
    base = SmtpSettings(
        host=server.host,
        port=server.port,
        security=Security.STARTTLS,
        username="",  # type: ignore[attr-defined]
        password_env="TEST_SMTP_PASSWORD",
        connections=2,
        messages_per_connection=100,
        timeout=2.0,
        connect_timeout=2.0,
        data_timeout=2.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def _send(settings: SmtpSettings, count: int) -> list[MessageStatus]:
    async with SmtpPool(settings) as pool:
        replies = [
            await pool.send("webinars@example.org", f"p{i}@example.org", MESSAGE) for i in range(count)
        ]
    return [reply.status for reply in replies]


def test_starttls_upgrades_once_per_connection_and_verifies_with_the_ca_file(
    certificate: tuple[Path, Path],
) -> None:
    server, handler = fault_server(Faults(), tls_context=server_context(certificate), require_starttls=True)
    with server:
        statuses = asyncio.run(_send(_smtp(server, ca_file=str(certificate[0]), connections=1), 5))
    assert statuses == [MessageStatus.SENT] * 5
    assert handler.starttls == 1 and handler.tls_messages == 5 and handler.connections == 1


def test_unverifiable_certificate_is_refused_by_default(certificate: tuple[Path, Path]) -> None:
    server, handler = fault_server(Faults(), tls_context=server_context(certificate), require_starttls=True)
    with server:

        async def one() -> Reply:
            async with SmtpPool(_smtp(server)) as pool:
                return await pool.send("webinars@example.org", "a@example.org", MESSAGE)

        reply = asyncio.run(one())
    # Deferred, not sent nor failed: the relay counts as unreachable (circuit_failures = 3 refusals), the
    # message waits for the next probe without an attempt counted.
    assert (reply.status, reply.code) == (MessageStatus.DEFERRED, None) and reply.retry_at is not None
    assert (
        "(3 failed connections; last: connect: SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] "
        "certificate verify failed: self-signed certificate (_ssl.c:"
    ) in reply.text
    assert handler.starttls == 3 and handler.messages == []


def test_implicit_tls_and_login_from_the_environment_never_logged(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-Pa55"
    monkeypatch.setenv("TEST_SMTP_PASSWORD", secret)
    server, handler = fault_server(
        Faults(), tls_context=server_context(certificate), implicit_tls=True, auth={"mailer": secret}
    )
    caplog.set_level(logging.DEBUG)
    with server:
        settings = _smtp(server, security=Security.TLS, ca_file=str(certificate[0]), username="mailer")
        assert asyncio.run(_send(settings, 3)) == [MessageStatus.SENT] * 3
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        refused = asyncio.run(_send(settings, 1))
    assert handler.tls_messages == 3 and handler.logins and handler.logins[0][0] == "mailer"
    assert refused == [MessageStatus.DEFERRED]  # a refused login is our problem, not the message's
    assert secret not in caplog.text and "wrong" not in caplog.text


def test_login_without_its_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    settings = SmtpSettings(
        "relay.example.org", 587, Security.STARTTLS, "mailer", "TEST_SMTP_PASSWORD", 1, 1, 1.0
    )
    with pytest.raises(ConfigError, match="TEST_SMTP_PASSWORD"):
        SmtpPool(settings)


def test_router_sends_each_step_kind_through_its_server(tmp_path: Path) -> None:
    first, first_handler = fault_server(Faults())
    second, second_handler = fault_server(Faults())
    with first, second:
        config = tmp_path / "config"
        config.mkdir()
        text = (
            (ROOT / "config" / "mailer.toml")
            .read_text()
            .replace('security = "starttls"', 'security = "none"')
        )
        text += (
            f'\n[smtp.servers.reminders]\nhost = "127.0.0.1"\nport = {second.port}\nmax_per_minute = 100\n'
        )
        text += '\n[smtp.routes]\nreminder = "reminders"\ninvitation = "default"\n'
        (config / "mailer.toml").write_text(
            text.replace('host = ""', 'host = "127.0.0.1"\nport_unused = 0', 1)
            .replace("port_unused = 0\n", "")
            .replace("port = 587", f"port = {first.port}")
        )
        (config / "series.toml").write_text((ROOT / "config" / "series.toml").read_text())
        (tmp_path / "templates").symlink_to(ROOT / "templates")
        settings = load_settings(config)
        assert settings.smtp_for(StepKind.REMINDER).rate == RateLimits(per_minute=100)

        async def run() -> None:
            async with SmtpRouter(settings) as router:
                await router.send("webinars@example.org", "a@example.org", MESSAGE, kind=StepKind.INVITATION)
                await router.send("webinars@example.org", "b@example.org", MESSAGE, kind=StepKind.REMINDER)
                await router.send("webinars@example.org", "c@example.org", MESSAGE, kind=StepKind.FOLLOW_UP)

        asyncio.run(run())
    assert sorted(first_handler.received_by()) == ["a@example.org", "c@example.org"]
    assert list(second_handler.received_by()) == ["b@example.org"]


@pytest.mark.parametrize(
    ("addition", "key", "hint"),
    [
        ('\n[smtp.routes]\nreminder = "nope"\n', "smtp.routes.reminder", "add [smtp.servers.nope]"),
        ('\n[smtp.routes]\nwebinar = "default"\n', "smtp.routes.webinar", "use one of invitation"),
        ("\n[smtp.servers.x]\nport = 25\n", "smtp.servers.x.host", "add `host"),
        (
            '\n[smtp.servers.x]\nhost = "h"\nmax_per_hour = -1\n',
            "smtp.servers.x.max_per_hour",
            "0 for no limit",
        ),
        ('\n[smtp.servers.x]\nhost = "h"\nspeed = 3\n', "smtp.servers.x.speed", "use one of"),
        ('\n[dkim]\nselector = "s1"\n', "dkim.private_key_file", "private_key_env"),
    ],
)
def test_delivery_config_errors_name_file_key_and_fix(
    tmp_path: Path, addition: str, key: str, hint: str
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mailer.toml").write_text((ROOT / "config" / "mailer.toml").read_text() + addition)
    (config / "series.toml").write_text((ROOT / "config" / "series.toml").read_text())
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.key == key and hint in str(info.value) and "mailer.toml" in info.value.path


def test_rate_limiter_sliding_windows() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(RateLimits(per_second=2, per_minute=5), monotonic=lambda: now[0], sleep=sleep)

    async def take(n: int) -> None:
        for _ in range(n):
            await limiter.acquire(max_wait=120)

    asyncio.run(take(5))
    assert now[0] == pytest.approx(2.0)  # 2 at t=0, 2 at t=1, 1 at t=2
    with pytest.raises(RateLimited) as info:
        asyncio.run(limiter.acquire(max_wait=10))
    assert info.value.window == "minute" and info.value.retry_after == pytest.approx(58.0)
    asyncio.run(take(1))
    assert now[0] == pytest.approx(60.0)


def test_dkim_signature_verifies(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (tmp_path / "dkim.pem").write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signer = DkimSigner(
        DkimSettings("example.org", "s2021", tmp_path / "dkim.pem", "", ("From", "To", "Subject"))
    )
    signed = signer.sign(MESSAGE)
    assert signed.startswith(b"DKIM-Signature:")
    assert dkim.verify(
        signed, dnsfunc=lambda name, timeout=5: record if name == b"s2021._domainkey.example.org." else None
    )
    assert not dkim.verify(signed.replace(b"body", b"bodY"), dnsfunc=lambda name, timeout=5: record)


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        (MESSAGE, MESSAGE),  # CRLF already: sent as it is
        (
            b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n",
            b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n",
        ),  # dot-stuffed on the wire, not in the message
        (b".first line\r\n\r\nbody\r\n", b".first line\r\n\r\nbody\r\n"),
        (
            b"Subject: lf\n\nbare LF\nand bare CR\rend",
            b"Subject: lf\r\n\r\nbare LF\r\nand bare CR\r\nend\r\n",
        ),
    ],
)
def test_message_arrives_byte_for_byte_with_dots_and_line_ends_handled(
    smtp_server: object, sent: bytes, received: bytes
) -> None:
    """RFC 5321 sec. 4.5.2: lines starting with "." are doubled on the wire and undone by the server;
    line ends other than CRLF are normalised (sec. 2.3.8) before sending."""
    settings = _smtp(smtp_server, security=Security.NONE)
    smtp_server.handler.messages.clear()  # type: ignore[attr-defined]

    async def send() -> MessageStatus:
        async with SmtpPool(settings) as pool:
            return (await pool.send("webinars@example.org", "dots@example.org", sent)).status

    assert asyncio.run(send()) is MessageStatus.SENT
    [message] = smtp_server.handler.messages  # type: ignore[attr-defined]
    assert message.data == received
    assert message.rcpt_tos == ["dots@example.org"]


def test_a_transparent_message_goes_as_it_is(smtp_server: object) -> None:
    settings = _smtp(smtp_server, security=Security.NONE)
    smtp_server.handler.messages.clear()  # type: ignore[attr-defined]
    message = (
        b"Subject: safe\r\n\r\nno line starts with a dot\r\n..but this one would be undone by the server\r\n"
    )
    dotted = b"Subject: dot\r\n\r\n..one dot when received\r\n"

    async def send() -> list[MessageStatus]:
        async with SmtpPool(settings) as pool:
            safe = await pool.send("webinars@example.org", "a@example.org", MESSAGE, transparent=True)
            unsafe = await pool.send("webinars@example.org", "b@example.org", message)
            stuffed = await pool.send("webinars@example.org", "c@example.org", dotted, transparent=True)
            return [safe.status, unsafe.status, stuffed.status]

    assert asyncio.run(send()) == [MessageStatus.SENT] * 3
    received = [m.data for m in smtp_server.handler.messages]  # type: ignore[attr-defined]
    assert received == [MESSAGE, message, b"Subject: dot\r\n\r\n.one dot when received\r\n"]


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
def test_tls_connections_carry_pipelined_transactions_on_uvloop(
    certificate: tuple[Path, Path], security: Security
) -> None:
    """The service runs on uvloop (mailer.app.run_async): the transaction layer takes over its TLS transports."""
    from mailer.app import run_async

    server, handler = fault_server(
        Faults(),
        tls_context=server_context(certificate),
        require_starttls=security is Security.STARTTLS,
        implicit_tls=security is Security.TLS,
    )
    with server:
        settings = _smtp(server, security=security, ca_file=str(certificate[0]), connections=2)

        async def send() -> tuple[list[MessageStatus], int]:
            async with SmtpPool(settings) as pool:
                replies = await asyncio.gather(
                    *(pool.send("webinars@example.org", f"p{i}@example.org", MESSAGE) for i in range(6))
                )
                return [reply.status for reply in replies], pool.pipelined

        statuses, pipelined = run_async(send())
    assert statuses == [MessageStatus.SENT] * 6 and pipelined == 6
    assert handler.tls_messages == 6 and handler.quits == handler.connections == 2


def test_the_tls_context_verifies_with_the_ca_file_unless_told_not_to(
    certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    plain = SmtpSettings("relay.example.org", 25, Security.NONE, "", "", 1, 1, 1.0)
    assert tls_context(plain) is None
    checked = tls_context(dataclasses.replace(plain, security=Security.STARTTLS, ca_file=str(certificate[0])))
    assert checked is not None and (checked.check_hostname, checked.verify_mode) == (True, ssl.CERT_REQUIRED)
    assert [dict(item[0] for item in cert["subject"]) for cert in checked.get_ca_certs()] == [
        {"commonName": "localhost"}
    ]  # the CA file only, not the system's store
    caplog.set_level(logging.WARNING)
    unchecked = tls_context(dataclasses.replace(plain, name="relay", security=Security.TLS, verify=False))
    assert unchecked is not None and (unchecked.check_hostname, unchecked.verify_mode) == (
        False,
        ssl.CERT_NONE,
    )
    assert [record.getMessage() for record in caplog.records] == [
        "SMTP server relay: certificate NOT verified (verify = false)"
    ]


def test_starttls_required_but_not_offered_is_a_config_error_naming_the_fix() -> None:
    server, handler = fault_server(Faults())  # no TLS: its EHLO does not offer STARTTLS
    with server, pytest.raises(ConfigError) as error:
        asyncio.run(_send(_smtp(server), 1))
    assert str(error.value) == (
        f"SMTP server default ({server.host}:{server.port}): security: 'starttls' is required but the server "
        'does not offer STARTTLS (for a local test server without TLS set security = "none" in [smtp] or '
        'SMTP_SECURITY=none; a relay on another machine must offer STARTTLS, or use security = "tls" on its '
        "port 465)"
    )
    assert handler.messages == []
    named = starttls_not_offered(dataclasses.replace(_smtp(server), name="eu"))
    assert named.fix.startswith(
        'for a local test server without TLS set security = "none" in [smtp.servers.eu]'
    )
