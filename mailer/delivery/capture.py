"""A local SMTP server (aiosmtpd) for development, demos and tests.

:class:`SmtpServer` runs aiosmtpd in a background thread with its own event loop, on 127.0.0.1 and a
port chosen by the OS (port 0) unless told otherwise. The handler decides what happens to each message:
:class:`EmlWriter` writes one ``.eml`` file per recipient so a newcomer can open what was sent.
SMTPUTF8 is offered, so internationalised addresses can be captured.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


class EmlWriter:
    """aiosmtpd handler writing each accepted message to ``directory`` as ``NNNNNN-recipient.eml``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._count = len(list(self.directory.glob("*.eml")))
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for recipient in envelope.rcpt_tos:
            with self._lock:
                self._count += 1
                number = self._count
            safe = _UNSAFE.sub("_", recipient)[:80]
            path = self.directory / f"{number:06d}-{safe}.eml"
            path.write_bytes(b"X-Envelope-To: " + recipient.encode("utf-8") + b"\r\n" + content)
        return "250 2.0.0 OK: captured"


class SmtpServer:
    """aiosmtpd on ``host``:``port`` in a daemon thread; a context manager.

    ``port`` 0 lets the OS choose; the bound port is in :attr:`port` after :meth:`start`.
    ``server_factory`` builds the aiosmtpd ``SMTP`` protocol object (tests pass fault-injecting ones);
    ``ssl_context`` makes it an implicit-TLS server.
    """

    def __init__(
        self,
        handler: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        server_factory: Callable[[Any], SMTP] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.ssl_context = ssl_context  # implicit TLS from the first byte (port 465 style)
        self.host = host
        self.port = port
        self._factory = server_factory or (
            lambda h: SMTP(h, enable_SMTPUTF8=True, hostname="capture.localhost")
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SmtpServer:
        """Start serving; returns when the socket is bound. Raises OSError if the port is taken."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(
                        lambda: self._factory(self.handler), self.host, self.port, ssl=self.ssl_context
                    )
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="smtp-capture", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
