"""Start the mailing service: load config, migrate the store, let APScheduler wake the tick until stopped.

    python schedule.py [--config DIR]

With no SMTP host configured, a local capture server writes every message to var/capture/*.eml.
With ``[web] enabled = true`` the web pages are served in the same event loop.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from mailer.app import open_app, run_async
from mailer.compose.checks import require_templates
from mailer.config import Settings, check_public_links, load_settings
from mailer.errors import MailerError
from mailer.logformat import FORMATS, configure_logging, log_format
from mailer.scheduler import Companion, serve


def companions(settings: Settings) -> list[Companion]:
    """What runs beside the scheduler: the web pages when ``settings.web.enabled`` (mailer.web.server)."""
    if not settings.web.enabled:
        return []
    from mailer.web.server import start_in_loop  # the web stack is loaded only when it is served

    return [start_in_loop]


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
        settings = load_settings(args.config)
        check_public_links(settings)  # a real relay with links participants cannot open stops start-up
        require_templates(settings, say=lambda text: print(text, flush=True))  # template errors stop start-up
        app = open_app(settings)
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
        run_async(serve(app, say=lambda text: print(text, flush=True), companions=companions(settings)))
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
