"""Bounce messages (DSNs and the many non-standard forms) read from an mbox or a maildir, recognised with
flufl.bounce (Mailman's detectors), and applied: a permanent failure suppresses the address (reason
``hard-bounce``), marks the contact bounced and, when the bounce quotes the original Message-ID of one of
our messages, moves that message from ``sent`` to ``bounced`` with a delivery event. Temporary failures
(delayed-delivery warnings) are counted, never applied. Importing the same file twice changes nothing.
"""

from __future__ import annotations

import email.message
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from flufl.bounce import all_failures
from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession

from mailer.errors import ImportFileError
from mailer.store.models import Contact, ContactStatus, EventKind, Message, MessageStatus, Suppression
from mailer.store.outbox import log_event, suppress

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class BounceReport:
    """What an import did."""

    read: int = 0  # messages in the mailbox
    recognised: int = 0  # messages found to be bounces (permanent or temporary)
    temporary: int = 0  # addresses reported as delayed only (not applied)
    suppressed: list[str] = field(default_factory=list)  # addresses newly suppressed
    already: int = 0  # addresses already on the suppression list
    messages_bounced: int = 0  # our sent messages moved to "bounced"


def read_mailbox(path: Path) -> Iterator[email.message.Message]:
    """Every message of a maildir (a folder with cur/ and new/) or an mbox file.

    Raises ImportFileError when ``path`` is neither.
    """
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise ImportFileError(f"{path}: a folder but no maildir (no cur/ or new/ inside)")
        box: mailbox.Mailbox = mailbox.Maildir(path, factory=None, create=False)
    elif path.is_file():
        box = mailbox.mbox(path, create=False)
    else:
        raise ImportFileError(f"{path}: no such file or folder")
    for key in box.keys():  # noqa: SIM118 - iterating a Mailbox gives messages, not keys
        yield box[key]


def _original_message_id(message: email.message.Message) -> str | None:
    """The Message-ID of the bounced message, from an attached message/rfc822 or text/rfc822-headers part."""
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, email.message.Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        if part.get_content_type() == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            match = _MESSAGE_ID.search(raw) if isinstance(raw, bytes) else None
            if match:
                return match.group(1).decode("ascii", "replace")
    return None


def apply_bounces(db: DbSession, path: Path, now: datetime, *, source: str = "") -> BounceReport:
    """Read ``path`` and apply every permanent failure found (caller commits). See the module docstring."""
    report = BounceReport()
    source = source or str(path)
    for message in read_mailbox(path):
        report.read += 1
        temporary, permanent = all_failures(message)
        if not temporary and not permanent:
            continue
        report.recognised += 1
        report.temporary += len(temporary)
        original = _original_message_id(message)
        for raw in sorted(permanent):
            address = raw.decode("utf-8", "replace").strip().strip("<>")
            key = address.casefold()
            if db.get(Suppression, key) is not None:
                report.already += 1
            else:
                detail = f"bounce message in {source}" + (f" for {original}" if original else "")
                suppress(db, key, "hard-bounce", detail, now)
                db.flush()
                report.suppressed.append(address)
            db.execute(
                update(Contact)
                .where(Contact.email_key == key)
                .values(status=ContactStatus.BOUNCED, updated_at=now)
            )
            if original:
                row = db.scalar(
                    select(Message).where(
                        Message.message_id == original, Message.status == MessageStatus.SENT
                    )
                )
                if row is not None and row.recipient.casefold() == key:
                    row.status = MessageStatus.BOUNCED
                    row.updated_at = now
                    log_event(db, row.id, EventKind.BOUNCED, now, detail=f"bounce message in {source}")
                    report.messages_bounced += 1
    return report
