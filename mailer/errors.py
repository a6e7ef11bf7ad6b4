"""The mailer's exceptions, one rooted tree; each also inherits the matching built-in.

MailerError
├── ConfigError(MailerError, ValueError)          bad config: file, key and fix
├── ImportFileError(MailerError, ValueError)      an input file that cannot be read at all
├── NaiveDatetimeError(MailerError, ValueError)   a datetime without tzinfo reached the core
├── InstantRangeError(MailerError, ValueError)    a time outside the years the mailer accepts (1970..9998)
├── RenderError(MailerError, ValueError)          a template failed (missing variable, syntax)
├── NotFoundError(MailerError, LookupError)       unknown session, step, contact or wave
├── WebhookRefusedError(MailerError, PermissionError)  a provider webhook request not acted on (4xx)
└── DeliveryError(MailerError)                    an SMTP delivery did not succeed
    ├── TemporaryDeliveryError(DeliveryError, ConnectionError)  4xx, drop, timeout: retry later
    └── PermanentDeliveryError(DeliveryError)                   5xx or unsendable: do not retry
"""

from __future__ import annotations


class MailerError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(MailerError, ValueError):
    """Invalid configuration.

    Attributes: ``path`` (the file), ``key`` (dotted key inside it, or ``""``), ``fix`` (what to do).
    """

    def __init__(self, path: str, key: str, problem: str, fix: str = "") -> None:
        self.path = path
        self.key = key
        self.problem = problem
        self.fix = fix
        where = f"{path}: {key}" if key else path
        message = f"{where}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class ImportFileError(MailerError, ValueError):
    """An import file that cannot be read at all (no header, unknown columns, undecodable)."""


class ImportStoppedError(ImportFileError):
    """An import file that could not be read to its end: ``stored_rows`` accepted rows before the line that
    stopped it are stored (0: nothing was)."""

    def __init__(self, message: str, stored_rows: int) -> None:
        super().__init__(message)
        self.stored_rows = stored_rows


class ReportMismatchError(ImportFileError):
    """A registration report whose preamble (title, date) names another session than the one given.

    The message ends "confirm that it belongs here"; each interface says how with :meth:`confirm_by` (the
    command line's ``--force``, the web's checkbox), so that neither names the other's way."""

    def confirm_by(self, how: str) -> str:
        """The message followed by how this interface confirms, in brackets: ``"... belongs here (--force)"``."""
        return f"{self} ({how})"


class NaiveDatetimeError(MailerError, ValueError):
    """A datetime without tzinfo was given where an aware one is required (DESIGN invariant 2)."""


class InstantRangeError(MailerError, ValueError):
    """A date and time outside the window every store and every time zone can hold (see
    :func:`mailer.timeline.clock.accepted_instant`)."""


class RenderError(MailerError, ValueError):
    """A template could not be rendered: syntax error or undefined variable."""


class NotFoundError(MailerError, LookupError):
    """A named session, step, list, contact or wave does not exist."""


class WebhookRefusedError(MailerError, PermissionError):
    """A request to a provider's webhook that is not acted on: unsigned, wrongly signed, replayed, malformed.

    ``status`` is the HTTP status to answer with (400 malformed, 401 no credentials, 403 forged or replayed,
    413 too large); the message says why, for the log (never sent back in detail).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class DeliveryError(MailerError):
    """An SMTP delivery failed. ``code`` is the SMTP reply code (0 when there was no reply)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.text = message


class TemporaryDeliveryError(DeliveryError, ConnectionError):
    """A failure worth retrying: 4xx reply, dropped connection, timeout."""


class PermanentDeliveryError(DeliveryError):
    """A failure not worth retrying: 5xx reply, or a message the server cannot accept."""
