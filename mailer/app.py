"""Wiring: settings, engine, session factory and schema, built once per process and passed down."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.config import Settings, load_settings
from mailer.store.engine import make_engine, require_store, session_factory, upgrade

if TYPE_CHECKING:
    from mailer.compose.outgoing import Outgoing
    from mailer.compose.render import Renderer

_T = TypeVar("_T")


@dataclass(frozen=True)
class App:
    """What every command and the service share: frozen settings and the store."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[DbSession]

    def close(self) -> None:
        self.engine.dispose()


def open_app(
    settings: Settings | None = None,
    *,
    config_dir: Path | None = None,
    database_url: str | None = None,
    existing: bool = False,
) -> App:
    """Load settings (unless given), connect to the store and migrate it to the newest schema.

    ``existing``: refuse a store that was never made instead of creating an empty one (commands that only
    read). Raises :class:`mailer.errors.ConfigError` for bad config, NotFoundError for a missing store when
    ``existing``; SQLAlchemy errors if the database is unreachable.
    """
    settings = settings or load_settings(config_dir, database_url=database_url)
    if existing:
        require_store(settings.database_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return App(settings=settings, engine=engine, factory=session_factory(engine))


def outgoing(settings: Settings, renderer: Renderer | None = None) -> Outgoing:
    """The maker of the messages the service sends, signing with DKIM when ``[dkim]`` is configured.

    Raises :class:`mailer.errors.ConfigError` for an unusable DKIM key, RenderError for broken templates.
    Imports the composing and signing packages on first use: commands that only read the store never need them.
    """
    from mailer.compose.outgoing import Outgoing
    from mailer.delivery.dkim import DkimSigner

    return Outgoing(settings, renderer, signer=DkimSigner(settings.dkim) if settings.dkim else None)


def run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)`` on uvloop's event loop when uvloop is installed (its sockets and callbacks cost
    the sending hot path about half of asyncio's), else on asyncio's own. Ctrl-C cancels ``main`` as with
    ``asyncio.run``."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
