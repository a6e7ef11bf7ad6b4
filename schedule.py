"""Start the mailing service: load config, migrate the store, let APScheduler wake the tick until stopped.

    python schedule.py [--config DIR]

With no SMTP host configured, a local capture server writes every message to var/capture/*.eml.
With ``[web] enabled = true`` the web pages are served in the same event loop.
SIGTERM or SIGINT during start-up (config, migrations, opening the store) stops it there: "stopped before
starting", exit status 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_stop_asked = threading.Event()  # a stop signal arrived before the service installed its own handlers


def _note_stop(signum: int, frame: FrameType | None) -> None:
    _stop_asked.set()


for _signum in _STOP_SIGNALS:  # before the imports below, which take a while on a busy host
    signal.signal(_signum, _note_stop)

import argparse  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError  # noqa: E402

from mailer.app import open_app, run_async  # noqa: E402
from mailer.compose.checks import require_templates  # noqa: E402
from mailer.config import Settings, check_public_links, load_settings  # noqa: E402
from mailer.errors import MailerError  # noqa: E402
from mailer.logformat import FORMATS, configure_logging, log_format  # noqa: E402
from mailer.scheduler import Companion, serve  # noqa: E402


def companions(settings: Settings) -> list[Companion]:
    """What runs beside the scheduler: the web pages when ``settings.web.enabled`` (mailer.web.server)."""
    if not settings.web.enabled:
        return []
    from mailer.web.server import start_in_loop  # the web stack is loaded only when it is served

    return [start_in_loop]


class StoppedBeforeStart(BaseException):
    """A stop signal arrived during start-up: nothing was started (a BaseException, as KeyboardInterrupt is,
    so no `except Exception` on the way swallows it)."""


def _stop_now(signum: int, frame: FrameType | None) -> None:
    _stop_asked.set()
    raise StoppedBeforeStart(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="config folder [default: ./config or $MAILER_CONFIG]")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--log-format", choices=FORMATS, help="text (default) or json, one object a line [$MAILER_LOG_FORMAT]"
    )
    args = parser.parse_args()
    try:
        fmt = log_format(args.log_format)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, fmt)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the capture server's per-command chatter
    try:
        for signum in _STOP_SIGNALS:  # from here a stop signal interrupts start-up where it is
            signal.signal(signum, _stop_now)
        if _stop_asked.is_set():
            raise StoppedBeforeStart("signal")
        settings = load_settings(args.config)
        check_public_links(settings)  # a real relay with links participants cannot open stops start-up
        require_templates(settings, say=lambda text: print(text, flush=True))  # template errors stop start-up
        app = open_app(settings)
        for signum in _STOP_SIGNALS:  # the service's loop takes over; until then a signal is noted
            signal.signal(signum, _note_stop)
    except StoppedBeforeStart:
        print("stopped before starting", flush=True)
        return 0
    except MailerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ArgumentError, NoSuchModuleError, OperationalError) as exc:
        print(
            f"error: cannot open the store: {str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}"
            " (check DATABASE_URL or [database] url in mailer.toml)",
            file=sys.stderr,
        )
        return 2
    try:
        run_async(
            serve(
                app,
                say=lambda text: print(text, flush=True),
                companions=companions(settings),
                stopped=_stop_asked.is_set,
            )
        )
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
