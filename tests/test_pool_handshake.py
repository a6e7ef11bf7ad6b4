"""The opening of a pooled connection (mailer/delivery/pool.py) against a real aiosmtpd server on loopback: a
login refused for good or for now, an empty password sent as it is, a greeting, a STARTTLS or a login that never
comes (``connect_timeout``), the circuit that spares a relay found unreachable, and the SMTPUTF8 choice passed
down to MAIL FROM; and a stop that ends a send's waits (for the circuit's probe, a free connection, the
connection being opened, a rate-limit slot) at once, with nothing sent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from mailer.config import RateLimits, Security, SmtpSettings
from mailer.delivery.capture import SmtpServer
from mailer.delivery.forwarding import NotAttempted
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Reply
from mailer.errors import ConfigError
from mailer.store.models import MessageStatus
from tests.certificates import self_signed_certificate, server_context
from tests.smtp_faults import Faults, FaultyHandler, fault_server

SENDER = "webinars@example.org"
MESSAGE = b"Subject: x\r\n\r\nx\r\n"
PASSWORD = "c0rrect-h0rse"
LIMIT = 60.0  # seconds the test waits for a reply that a timeout of 1 s should end: a hang fails it


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def _settings(port: int, **changes: object) -> SmtpSettings:
    base = SmtpSettings(
        "127.0.0.1", port, Security.NONE, "", "TEST_POOL_PASSWORD", 1, 100, 10.0, connect_timeout=10.0
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def _send_one(settings: SmtpSettings, utf8: bool | None = None) -> tuple[Reply, int, int]:
    """One message through a new pool: (reply, connections tried, failures the circuit counted)."""
    async with SmtpPool(settings) as pool:
        if utf8 is None:
            sending = pool.send(SENDER, "a@example.org", MESSAGE)
        else:
            sending = pool.send(SENDER, "a@example.org", MESSAGE, utf8=utf8)
        reply = await asyncio.wait_for(sending, LIMIT)
        return reply, pool.connect_attempts, pool.circuit.failures


def _login_server(certificate: tuple[Path, Path], faults: Faults) -> tuple[SmtpServer, FaultyHandler]:
    """An implicit-TLS server that takes the login mailer / PASSWORD (unless ``faults`` says otherwise)."""
    return fault_server(
        faults, tls_context=server_context(certificate), implicit_tls=True, auth={"mailer": PASSWORD}
    )


def _login(certificate: tuple[Path, Path], port: int, **changes: object) -> SmtpSettings:
    return _settings(port, security=Security.TLS, ca_file=str(certificate[0]), username="mailer", **changes)


def test_a_refused_login_is_deferred_logged_once_and_not_counted_by_the_circuit(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_POOL_PASSWORD", PASSWORD)
    server, handler = _login_server(
        certificate, Faults(auth_reply="535 5.7.8 Authentication credentials invalid")
    )
    caplog.set_level(logging.INFO, logger="mailer.delivery.pool")
    with server:
        result = asyncio.run(_send_one(_login(certificate, server.port)))
    # A refused login is the configuration's problem, not the message's: deferred, tried once, and the relay
    # is not taken for unreachable (RFC 4954 sec. 6: 535 "authentication credentials invalid").
    assert result == (
        Reply(MessageStatus.DEFERRED, 535, "auth: 535 5.7.8 Authentication credentials invalid"),
        1,
        0,
    )
    assert handler.messages == []
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "mailer.delivery.pool"]
    assert logged == [
        (
            "ERROR",
            "SMTP server default refused the login of mailer: 535 5.7.8 Authentication credentials invalid",
        )
    ]
    assert PASSWORD not in caplog.text


def test_a_login_refused_for_now_is_deferred_after_one_connection(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_POOL_PASSWORD", PASSWORD)
    server, _ = _login_server(certificate, Faults(auth_reply="454 4.7.0 Temporary authentication failure"))
    with server:
        result = asyncio.run(_send_one(_login(certificate, server.port)))
    assert result == (
        Reply(MessageStatus.DEFERRED, 454, "auth: 454 4.7.0 Temporary authentication failure"),
        1,
        0,
    )


def test_a_connection_closed_right_after_the_login_is_deferred_and_not_counted_by_the_circuit(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The close is seen either before the pool takes the connection over (the login's reply and the end of
    # the stream read in one turn of the loop) or at MAIL: which one is up to the loop, so ten rounds reach
    # both (each about half the time here). Either way the message is deferred and the relay not counted.
    monkeypatch.setenv("TEST_POOL_PASSWORD", PASSWORD)
    server, handler = _login_server(certificate, Faults(close_after_auth=True))
    seen_at = {
        Reply(MessageStatus.DEFERRED, None, "connect: Connection lost"): "connect",
        Reply(MessageStatus.DEFERRED, None, "mail: connection lost: Unexpected EOF received"): "mail",
    }
    with server:
        results = [asyncio.run(_send_one(_login(certificate, server.port))) for _ in range(10)]
    where = [seen_at.get(reply, repr(reply)) for reply, _, _ in results]
    assert set(where) <= {"connect", "mail"}, where
    assert [(attempts, failures) for _, attempts, failures in results] == [(1, 0)] * 10
    assert (handler.connections, handler.messages) == (10, [])


def test_a_login_without_reply_ends_after_connect_timeout(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_POOL_PASSWORD", PASSWORD)
    server, handler = _login_server(certificate, Faults(auth_delay=LIMIT * 2))
    with server:
        result = asyncio.run(_send_one(_login(certificate, server.port, connect_timeout=1.0)))
    assert result == (
        Reply(
            MessageStatus.DEFERRED, None, "auth: SMTPReadTimeoutError: Timed out waiting for server response"
        ),
        1,
        0,
    )
    assert handler.messages == []


def test_an_empty_password_is_sent_as_it_is(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_POOL_PASSWORD", "")  # set, and empty: a login with no password
    server, handler = fault_server(
        Faults(), tls_context=server_context(certificate), implicit_tls=True, auth={"mailer": ""}
    )
    with server:
        result = asyncio.run(_send_one(_login(certificate, server.port)))
    assert result == (Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued"), 1, 0)
    assert handler.passwords == [""]
    assert handler.logins == [("mailer", "PLAIN")]


def test_a_starttls_without_reply_ends_after_connect_timeout(certificate: tuple[Path, Path]) -> None:
    server, handler = fault_server(
        Faults(starttls_delay=LIMIT * 2), tls_context=server_context(certificate), require_starttls=True
    )
    reason = "connect: SMTPReadTimeoutError: Timed out waiting for server response"
    with server:
        settings = _settings(
            server.port,
            security=Security.STARTTLS,
            ca_file=str(certificate[0]),
            connect_timeout=1.0,
            circuit_failures=1,
        )
        reply, attempts, failures = asyncio.run(_send_one(settings))
    assert (reply.status, reply.code, attempts, failures) == (MessageStatus.DEFERRED, None, 1, 1)
    assert reply.text.endswith(f"(1 failed connections; last: {reason})")
    assert (handler.starttls, handler.messages) == (1, [])


def test_a_silent_greeting_ends_after_connect_timeout_and_opens_the_circuit() -> None:
    server, handler = fault_server(Faults(greeting_delay=LIMIT * 2))
    reason = "connect: SMTPConnectTimeoutError: Timed out waiting for server ready message"
    with server:
        reply, attempts, failures = asyncio.run(
            _send_one(_settings(server.port, connect_timeout=1.0, circuit_failures=1))
        )
    assert (reply.status, reply.code, attempts, failures) == (MessageStatus.DEFERRED, None, 1, 1)
    assert reply.text.startswith(f"relay 127.0.0.1:{server.port} (default) unreachable since ")
    assert reply.text.endswith(f"(1 failed connections; last: {reason})")
    assert reply.retry_at is not None
    assert handler.messages == []


def test_an_open_circuit_defers_without_connecting() -> None:
    server, handler = fault_server(Faults(greeting_421=2))

    async def twice() -> tuple[list[Reply], int]:
        async with SmtpPool(_settings(server.port, circuit_failures=1)) as pool:
            replies = [await pool.send(SENDER, "a@example.org", MESSAGE) for _ in range(2)]
            return replies, pool.connect_attempts

    with server:
        (first, second), attempts = asyncio.run(twice())
    assert attempts == 1 and handler.connections == 1
    assert second == first and second.status is MessageStatus.DEFERRED and second.retry_at is not None


def test_a_new_connection_dropped_at_mail_is_deferred_not_retried() -> None:
    server, handler = fault_server(Faults(drop_at_mail=1, pipelining=False))
    with server:
        reply, attempts, failures = asyncio.run(_send_one(_settings(server.port)))
    # Only a reused connection may have been closed by the server meanwhile: a new one dropping is news.
    assert (reply, attempts, failures) == (
        Reply(MessageStatus.DEFERRED, None, "mail: connection lost: Unexpected EOF received"),
        1,
        0,
    )
    assert handler.messages == [] and handler.connections == 1


def test_a_reused_connection_dropped_at_mail_is_retried_once_on_a_new_one_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The server may close an idle connection at any time (RFC 5321 sec. 4.5.3.2.7): the message goes on a new
    # one, and the log says so, naming the relay.
    server, handler = fault_server(Faults(pipelining=False))
    caplog.set_level(logging.INFO, logger="mailer.delivery.pool")

    async def twice() -> tuple[list[Reply], int]:
        async with SmtpPool(_settings(server.port, name="relay-a")) as pool:
            first = await pool.send(SENDER, "a@example.org", MESSAGE)
            handler.faults.drop_at_mail = 1
            second = await pool.send(SENDER, "b@example.org", MESSAGE)
            return [first, second], pool.connect_attempts

    with server:
        replies, attempts = asyncio.run(twice())
    assert replies == [Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued")] * 2
    assert (attempts, handler.connections, handler.received_by()) == (
        2,
        2,
        {"a@example.org": 1, "b@example.org": 1},
    )
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "mailer.delivery.pool"]
    assert (
        "INFO",
        "connection to relay-a dropped before DATA (mail: connection lost: Unexpected EOF received);"
        " retrying on a new one",
    ) in logged


def test_a_quit_without_reply_ends_after_the_command_timeout() -> None:
    server, handler = fault_server(Faults(quit_unanswered=True))
    with server:
        reply, attempts, _ = asyncio.run(_send_one(_settings(server.port, timeout=1.0)))
    assert (reply.status, reply.code, attempts, handler.quits) == (MessageStatus.SENT, 250, 1, 1)


def test_smtputf8_only_when_asked_or_needed() -> None:
    server, handler = fault_server(Faults())
    with server:
        plain = asyncio.run(_send_one(_settings(server.port)))
        asked = asyncio.run(_send_one(_settings(server.port), utf8=True))
    sent = (Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued"), 1, 0)
    assert plain == asked == sent
    assert [message.mail_options for message in handler.messages] == [
        ["BODY=8BITMIME"],
        ["SMTPUTF8", "BODY=8BITMIME"],
    ]


def test_a_utf8_recipient_or_sender_asks_for_smtputf8_itself() -> None:
    # RFC 6531 sec. 3.4: a mailbox with non-ASCII characters needs SMTPUTF8 on MAIL FROM, whichever of the two.
    server, handler = fault_server(Faults())

    async def send() -> list[Reply]:
        async with SmtpPool(_settings(server.port)) as pool:
            return [
                await pool.send(SENDER, "josé@example.org", MESSAGE),
                await pool.send("équipe@example.org", "ann@example.org", MESSAGE),
            ]

    with server:
        replies = asyncio.run(send())
    assert replies == [Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued")] * 2
    assert [message.mail_options for message in handler.messages] == [["SMTPUTF8", "BODY=8BITMIME"]] * 2


def test_a_login_whose_password_variable_is_unset_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_POOL_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as refused:
        SmtpPool(_settings(2525, username="mailer", name="relay-a"))
    assert (refused.value.path, refused.value.key, refused.value.fix) == (
        "environment",
        "TEST_POOL_PASSWORD",
        "export TEST_POOL_PASSWORD=...",
    )
    assert str(refused.value) == (
        "environment: TEST_POOL_PASSWORD: SMTP server 'relay-a' logs in as 'mailer' but the variable is unset"
        " (export TEST_POOL_PASSWORD=...)"
    )


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (the server's counters change in its own thread)."""
    async with asyncio.timeout(LIMIT):
        while not condition():
            await asyncio.sleep(0.01)


async def _stopped(sending: asyncio.Future[Reply]) -> str:
    """The text of the NotAttempted that ends ``sending`` (a stopped send); fails if it ends otherwise."""
    with pytest.raises(NotAttempted) as stopped:
        await asyncio.wait_for(sending, LIMIT * 2)
    return str(stopped.value)


async def _cancelled(sending: asyncio.Future[Reply]) -> bool:
    """Cancel ``sending``; whether it was still under way."""
    under_way = not sending.done()
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    return under_way


def test_a_send_stopped_before_it_begins_opens_no_connection() -> None:
    server, handler = fault_server(Faults())

    async def run() -> tuple[str, int]:
        stop = asyncio.Event()
        stop.set()
        async with SmtpPool(_settings(server.port)) as pool:
            sending = asyncio.ensure_future(pool.send(SENDER, "a@example.org", MESSAGE, stop=stop))
            return await _stopped(sending), pool.connect_attempts

    with server:
        assert asyncio.run(run()) == ("stopped", 0)
    assert (handler.connections, handler.messages) == (0, [])


def test_a_stop_while_connecting_gives_up_at_once_and_counts_no_failure() -> None:
    server, handler = fault_server(Faults(greeting_delay=LIMIT * 2))

    async def run() -> tuple[str, int, int, int]:
        stop = asyncio.Event()
        async with SmtpPool(_settings(server.port, connect_timeout=LIMIT, circuit_failures=1)) as pool:
            sending = asyncio.ensure_future(pool.send(SENDER, "a@example.org", MESSAGE, stop=stop))
            await _until(lambda: handler.connections == 1)  # the greeting never comes
            stop.set()
            text = await _stopped(sending)
            return text, pool.connect_attempts, pool.connects, pool.circuit.failures

    with server:
        assert asyncio.run(run()) == ("stopped", 1, 0, 0)
    assert handler.messages == []


def test_a_stop_while_waiting_for_a_free_connection_gives_up_at_once() -> None:
    server, handler = fault_server(Faults(greeting_delay=LIMIT * 2))

    async def run() -> tuple[str, bool, int]:
        stop = asyncio.Event()
        async with SmtpPool(_settings(server.port, connect_timeout=LIMIT, circuit_failures=1)) as pool:
            first = asyncio.ensure_future(pool.send(SENDER, "a@example.org", MESSAGE))
            await _until(lambda: handler.connections == 1)  # the only connection is being opened
            second = asyncio.ensure_future(pool.send(SENDER, "b@example.org", MESSAGE, stop=stop))
            await asyncio.sleep(0.2)  # the second send waits for the connection
            stop.set()
            text = await _stopped(second)
            return text, await _cancelled(first), pool.connect_attempts

    with server:
        # Stopped while the first send still holds the connection: it did not wait for it.
        assert asyncio.run(run()) == ("stopped", True, 1)
    assert handler.messages == []


def test_a_send_stopped_before_it_begins_while_every_connection_is_busy_waits_for_none() -> None:
    server, handler = fault_server(Faults(greeting_delay=LIMIT * 2))

    async def run() -> tuple[str, bool, int]:
        stop = asyncio.Event()
        stop.set()
        async with SmtpPool(_settings(server.port, connect_timeout=LIMIT, circuit_failures=1)) as pool:
            first = asyncio.ensure_future(pool.send(SENDER, "a@example.org", MESSAGE))
            await _until(lambda: handler.connections == 1)  # the only connection is being opened
            second = asyncio.ensure_future(pool.send(SENDER, "b@example.org", MESSAGE, stop=stop))
            text = await _stopped(second)
            return text, await _cancelled(first), pool.connect_attempts

    with server:
        assert asyncio.run(run()) == ("stopped", True, 1)
    assert handler.messages == []


def test_a_stop_while_waiting_for_another_sends_probe_gives_up_at_once() -> None:
    server, handler = fault_server(Faults(greeting_421=1, greeting_delay=LIMIT * 2))

    async def run() -> tuple[MessageStatus, str, bool, int]:
        stop = asyncio.Event()
        settings = _settings(
            server.port,
            connect_timeout=LIMIT,
            circuit_failures=1,
            circuit_backoff=0.05,
            circuit_backoff_max=0.05,
        )
        async with SmtpPool(settings) as pool:
            refused = await pool.send(SENDER, "a@example.org", MESSAGE)  # a 421 greeting opens the circuit
            assert pool.circuit.open and pool.circuit.next_probe is not None
            await asyncio.sleep(0.1)  # past the next probe's time (0.05 s, jitter 0.8-1.2, capped at 0.05 s)
            probe = asyncio.ensure_future(pool.send(SENDER, "b@example.org", MESSAGE))
            await _until(lambda: handler.connections == 2)  # the probe's greeting never comes
            waiting = asyncio.ensure_future(pool.send(SENDER, "c@example.org", MESSAGE, stop=stop))
            await asyncio.sleep(0.2)  # the third send waits for the probe's result
            stop.set()
            text = await _stopped(waiting)
            return refused.status, text, await _cancelled(probe), pool.connect_attempts

    with server:
        assert asyncio.run(run()) == (MessageStatus.DEFERRED, "stopped", True, 2)
    assert handler.messages == []


def test_a_send_refused_circuit_failures_times_in_a_row_gives_up_though_another_connection_opened() -> None:
    # The circuit's count starts again when another connection opens; a send's own count does not: after
    # circuit_failures refusals of its own it ends with the last refusal, and tries no fourth connection.
    server, handler = fault_server(Faults(greeting_delay=3.0))

    async def run() -> tuple[Reply, Reply, int, bool]:
        settings = _settings(server.port, connections=2, connect_timeout=LIMIT, circuit_failures=3)
        async with SmtpPool(settings) as pool:
            opening = asyncio.ensure_future(pool.send(SENDER, "a@example.org", MESSAGE))
            await _until(lambda: handler.connections == 1)  # greeted 3 s later, after the first refusal
            handler.faults.greeting_421 = 3
            refused = await asyncio.wait_for(pool.send(SENDER, "b@example.org", MESSAGE), LIMIT)
            return await opening, refused, pool.connect_attempts, pool.circuit.open

    with server:
        sent, refused, attempts, circuit_open = asyncio.run(run())
    assert sent == Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued")
    assert refused == Reply(MessageStatus.DEFERRED, 421, "connect: 421 4.3.2 busy, try again later")
    assert (attempts, handler.connections, circuit_open) == (4, 4, False)
    assert handler.received_by() == {"a@example.org": 1}


def test_a_stop_while_a_refused_send_waits_for_another_connection_gives_up_at_once() -> None:
    # A refused connection waits for the others being opened before it counts towards the circuit; a stop
    # ends that wait too, while the other connection is still being greeted.
    server, handler = fault_server(Faults(greeting_delay=LIMIT * 2))

    async def run() -> tuple[str, bool, int, int]:
        stop = asyncio.Event()
        settings = _settings(server.port, connections=2, connect_timeout=LIMIT, circuit_failures=3)
        async with SmtpPool(settings) as pool:
            opening = asyncio.ensure_future(pool.send(SENDER, "a@example.org", MESSAGE))
            await _until(lambda: handler.connections == 1)  # its greeting never comes
            handler.faults.greeting_421 = 1
            refused = asyncio.ensure_future(pool.send(SENDER, "b@example.org", MESSAGE, stop=stop))
            await _until(lambda: handler.connections == 2)
            await asyncio.sleep(0.2)  # the refused send waits for the first connection's attempt
            stop.set()
            text = await _stopped(refused)
            return text, await _cancelled(opening), pool.connect_attempts, pool.circuit.failures

    with server:
        # Stopped while the first connection was still being opened: it did not wait for it.
        assert asyncio.run(run()) == ("stopped", True, 2, 1)
    assert handler.messages == []


def test_a_stop_while_waiting_for_a_rate_limit_slot_gives_up_at_once() -> None:
    server, handler = fault_server(Faults())

    async def run() -> tuple[Reply, str, int]:
        stop = asyncio.Event()
        settings = _settings(server.port, rate=RateLimits(per_minute=1), max_rate_wait=LIMIT * 2)
        async with SmtpPool(settings) as pool:
            first = await pool.send(SENDER, "a@example.org", MESSAGE)
            second = asyncio.ensure_future(pool.send(SENDER, "b@example.org", MESSAGE, stop=stop))
            await asyncio.sleep(0.2)  # the next slot is a minute away
            stop.set()
            return first, await _stopped(second), pool.connects

    with server:
        assert asyncio.run(run()) == (Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued"), "stopped", 1)
    assert handler.received_by() == {"a@example.org": 1}


def test_a_failed_connection_waits_for_the_one_being_opened_before_the_circuit_decides() -> None:
    # Two sends open two connections at once: one is refused (421 greeting), the other is greeted a second
    # later. The refused one waits for the other attempt, whose success closes the circuit that a single
    # failure (circuit_failures 1) had opened: its message gets the refusal, not the open circuit's deferral.
    server, handler = fault_server(Faults(greeting_421=1, greeting_delay=1.0))

    async def run() -> tuple[list[Reply], int, int, bool, int]:
        settings = _settings(server.port, connections=2, connect_timeout=LIMIT, circuit_failures=1)
        async with SmtpPool(settings) as pool:
            replies = await asyncio.wait_for(
                asyncio.gather(*(pool.send(SENDER, f"{name}@example.org", MESSAGE) for name in ("a", "b"))),
                LIMIT,
            )
            circuit = pool.circuit
            return replies, pool.connect_attempts, pool.connects, circuit.open, circuit.failures

    with server:
        replies, attempts, connects, circuit_open, failures = asyncio.run(run())
    assert sorted(replies, key=lambda reply: reply.status.value) == [
        Reply(MessageStatus.DEFERRED, 421, "connect: 421 4.3.2 busy, try again later"),
        Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued"),
    ]
    assert (attempts, connects, circuit_open, failures, len(handler.messages)) == (2, 1, False, 0, 1)
