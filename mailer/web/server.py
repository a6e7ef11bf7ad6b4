"""Serving the web application with uvicorn: on its own (``mailer web``), inside the service's event loop
(``python schedule.py`` with ``[web] enabled = true``), or in a background thread (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from mailer.app import App
from mailer.delivery.providers import Fetch
from mailer.errors import MailerError
from mailer.timeline.clock import Clock

log = logging.getLogger(__name__)


class WebServerError(MailerError, OSError):
    """The web server could not start (address in use, no permission to bind)."""


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (the service's scheduler or a test)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        """The bound port (useful with port 0), once started."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def make_server(
    app: App,
    *,
    host: str | None = None,
    port: int | None = None,
    clock: Clock | None = None,
    access_log: bool = False,
    fetch: Fetch | None = None,
) -> EmbeddedServer:
    """A server for ``app`` on ``host``:``port`` (default: ``settings.web``); not started."""
    from mailer.web.app import create_app

    web = create_app(app, clock=clock, fetch=fetch)
    config = uvicorn.Config(
        web,
        host=host or app.settings.web.host,
        port=app.settings.web.port if port is None else port,
        log_level="warning",
        log_config=None,  # records go to the root logger: text or JSON as configured (mailer.logformat)
        access_log=access_log,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
    )
    return EmbeddedServer(config)


async def _serve(server: EmbeddedServer) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot bind
        config = server.config
        raise WebServerError(f"cannot serve the web pages on {config.host}:{config.port} (in use?)") from None


async def start_in_loop(app: App, say: Callable[[str], None] = print) -> Callable[[], Any]:
    """Start serving in the running event loop; returns an async ``stop()`` that finishes open requests.

    Raises :class:`WebServerError` when the address cannot be bound.
    """
    server = make_server(app)
    task = asyncio.create_task(_serve(server), name="web")
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
        await asyncio.sleep(0.05)
    say(
        f"web pages on http://{server.config.host}:{server.port}/ (links in messages use {app.settings.web.base_url})"
    )

    async def stop() -> None:
        server.should_exit = True
        await task

    return stop


class ThreadedServer:
    """The web app in a daemon thread with its own event loop (tests); a context manager.

    ``url`` is ``http://127.0.0.1:<port>`` once entered.
    """

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        self.server = make_server(app, host=host, port=port, clock=clock, fetch=fetch)
        self._thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.server.config.host}:{self.server.port}"

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            if not self._thread.is_alive():
                raise WebServerError("the web server thread stopped during start-up")
            threading.Event().wait(0.01)
        raise WebServerError("the web server did not start within 5 seconds")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)


__all__ = ["EmbeddedServer", "ThreadedServer", "WebServerError", "make_server", "start_in_loop"]
