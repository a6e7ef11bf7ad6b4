"""The bounce mailbox: reports fetched over IMAP (standard library imaplib), applied, then filed away.

One poll (:func:`poll_mailbox`, blocking: the service runs it in a thread) logs in, and for each message of
``folder``, oldest first:

1. fetches it without setting ``\\Seen`` (``BODY.PEEK[]``);
2. handles it in a transaction of its own (mailer.delivery.bounces.handle_batch, which records a report that
   breaks a parser as ``unparsed`` and goes on);
3. only after that commit, moves it (``UID MOVE``, else ``COPY`` + ``\\Deleted`` + ``UID EXPUNGE``) to
   ``processed_folder``, or to ``unparsed_folder`` when it could not be read: nothing is ever deleted.

A crash between 2 and 3 leaves the message where it was; the next poll sees it again and, the report being
recorded by its fingerprint, applies nothing twice. Connection and login errors propagate
(:class:`imaplib.IMAP4.error`, OSError, ssl.SSLError) and leave the mailbox untouched; so does a database
error (SQLAlchemyError): the message being handled stays in ``folder``, unrecorded.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.config import ImapSettings, Security
from mailer.delivery.bounces import ReportTally, handle_batch
from mailer.delivery.handling import Policy
from mailer.store.engine import transaction

log = logging.getLogger(__name__)


def _tls_context(imap: ImapSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=imap.ca_file or None)
    if not imap.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(imap: ImapSettings) -> imaplib.IMAP4:
    """An IMAP connection, TLS as configured, logged in. Raises imaplib.IMAP4.error (login refused, no
    password in the environment), OSError or ssl.SSLError."""
    password = imap.password
    if not imap.username or password is None:
        raise imaplib.IMAP4.error(
            f"bounce mailbox {imap.source}: no username or ${imap.password_env} is not set"
        )
    connection: imaplib.IMAP4
    if imap.security is Security.TLS:
        connection = imaplib.IMAP4_SSL(
            imap.host, imap.port, ssl_context=_tls_context(imap), timeout=imap.timeout
        )
    else:
        connection = imaplib.IMAP4(imap.host, imap.port, timeout=imap.timeout)
        if imap.security is Security.STARTTLS:
            connection.starttls(ssl_context=_tls_context(imap))
    try:
        connection.login(imap.username, password)
        status, data = connection.capability()  # servers announce more (MOVE, UIDPLUS) once logged in
        if status == "OK" and data and isinstance(data[0], bytes):
            connection.capabilities = tuple(data[0].decode("ascii", "replace").upper().split())
    except BaseException:
        connection.shutdown()
        raise
    return connection


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ensure_folder(connection: imaplib.IMAP4, folder: str) -> None:
    status, _ = connection.select(_quoted(folder), readonly=True)
    if status != "OK":
        status, answer = connection.create(_quoted(folder))
        if status != "OK":
            raise imaplib.IMAP4.error(f"cannot create folder {folder}: {answer}")


def _move(connection: imaplib.IMAP4, uid: bytes, folder: str) -> None:
    if "MOVE" in connection.capabilities:
        status, answer = connection.uid("MOVE", uid.decode(), _quoted(folder))
    else:
        status, answer = connection.uid("COPY", uid.decode(), _quoted(folder))
        if status == "OK":
            connection.uid("STORE", uid.decode(), "+FLAGS.SILENT", "(\\Deleted)")
            status, answer = connection.uid("EXPUNGE", uid.decode())
    if status != "OK":
        raise imaplib.IMAP4.error(f"cannot move message {uid!r} to {folder}: {answer}")


def _fetch(connection: imaplib.IMAP4, uid: bytes) -> bytes | None:
    status, data = connection.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
    if status != "OK":
        return None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def poll_mailbox(
    imap: ImapSettings,
    factory: sessionmaker[DbSession],
    now: Callable[[], datetime],
    *,
    policy: Policy,
) -> ReportTally:
    """Handle every message in the bounce mailbox once and file it away; see the module docstring."""
    tally = ReportTally()
    connection = connect(imap)
    try:
        for folder in (imap.processed_folder, imap.unparsed_folder):
            _ensure_folder(connection, folder)
        status, answer = connection.select(_quoted(imap.folder))
        if status != "OK":
            raise imaplib.IMAP4.error(f"cannot open folder {imap.folder}: {answer}")
        status, data = connection.uid("SEARCH", "ALL")
        uids = data[0].split() if status == "OK" and data and data[0] else []
        for uid in uids:
            raw = _fetch(connection, uid)
            if raw is None:  # gone meanwhile (another poller took it)
                continue
            unparsed_before = len(tally.unparsed)
            with transaction(factory) as db:
                handle_batch(
                    db,
                    iter([(f"uid {uid.decode()}", raw)]),
                    now(),
                    policy=policy,
                    source=imap.source,
                    tally=tally,
                )
            failed = len(tally.unparsed) > unparsed_before
            _move(connection, uid, imap.unparsed_folder if failed else imap.processed_folder)
        connection.close()
    finally:
        try:
            connection.logout()
        except (imaplib.IMAP4.error, OSError):
            log.warning("bounce mailbox %s: logout failed", imap.source)
    return tally
