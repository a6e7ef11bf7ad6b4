"""A SHA-256 digest of thousands of composed messages, to prove that a change to rendering or composing
keeps every byte: run it on main and on the branch, the digests must be equal.

    .venv/bin/python bench/compose_digest.py [-n 4000] [--each]
    cd ../ref && COMPOSE_ROOT=$PWD .venv/bin/python ../compose/bench/compose_digest.py   # main's code

Messages: every configured step and the notices (date changed, cancelled; with and without a calendar
held), every session, recipients of varied names (non-ASCII, long enough to cross a quoted-printable line,
starting with ".", holding "=" or the MIME boundary's text), languages (ar included, regional variants,
an unknown tag that falls back), zones, personal links and sample links, several dates and SEQUENCEs.
The signing key is fixed here, so the links are the same in every checkout. ``--each`` prints one digest
per message (to find the first that differs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(os.environ.get("COMPOSE_ROOT") or Path(__file__).resolve().parent.parent)  # another checkout
sys.path.insert(0, str(ROOT))
os.environ["MAILER_SECRET_KEY"] = "compose-digest-fixed-key-0123456789abcdefghijklmnop"

from mailer.compose.outgoing import Outgoing, notice_extra  # noqa: E402
from mailer.config import StepKind, load_settings  # noqa: E402
from mailer.store.recipient import Recipient  # noqa: E402
from mailer.store.relationships import Relationship  # noqa: E402
from mailer.timeline.plan import notice_step  # noqa: E402

NAMES = (
    "Amina Diallo",
    "José Núñez",
    "Hélène Dubois",
    "محمد العلي",
    ".Dot Leading",
    "..",
    ".",
    "A=B Equals",
    "=?utf-8?q?x?=",
    "--=_mailer-alt-7f3a9c0d",
    "=_mailer-mix-7f3a9c0d",
    "Maximilian Alexander Bartholomew Featherstonehaugh-Wolfeschlegelsteinhausen Jr.",
    "Ζωή Παπαδοπούλου-Αλεξανδροπούλου Καραμανλή Κωνσταντινοπούλου",
    'O\'Brien "Quote" <x>',
    "李小龙",
    "",
    "x" * 90,
    "é" * 40,
    "Ana María de la Santísima Trinidad Fernández-Gutiérrez y Sánchez de la Vega",
    "Tab\tName",
    "Trailing space ",
    "A & B <b>bold</b>",
)
TITLES = ("", "Hon.", "Dr.", "S.E.")
LANGUAGES = ("en", "es", "fr", "ar", "pt", "pt-PT", "pt-BR", "de", "es-AR", "fr-HT")
ZONES = ("Africa/Lagos", "UTC", "America/Port_of_Spain", "Asia/Kolkata", "Pacific/Auckland")
COUNTRIES = ("", "NG", "MZ", "BR", "HT")
EMAILS = ("person{i}@example.org", "Person.{i}@Example.org", "josé{i}@example.org")


def messages(count: int) -> list[bytes]:
    settings = load_settings(ROOT / "config", database_url="sqlite:///:memory:")
    outgoing = Outgoing(settings)
    series = settings.series
    steps = [*series.steps, notice_step("date-changed", 1), notice_step("cancelled", 2)]
    out: list[bytes] = []
    i = 0
    base = datetime(2021, 5, 20, 9, 30, 15, tzinfo=UTC)
    while len(out) < count:
        for session in series.sessions:
            for step in steps:
                for k in range(12):  # runs of recipients in one group, then others
                    n = i * 7 + k
                    recipient = Recipient(
                        email=EMAILS[n % len(EMAILS)].format(i=n),
                        name=NAMES[n % len(NAMES)],
                        title=TITLES[(n // 3) % len(TITLES)],
                        institution="Parliament",
                        country=COUNTRIES[(n // 5) % len(COUNTRIES)],
                        language=LANGUAGES[(n // 2) % len(LANGUAGES)],
                        time_zone=ZONES[(i // 3) % len(ZONES)],
                        region=("africa", "", "caribbean")[n % 3],
                    )
                    date = base + timedelta(days=i % 40, seconds=k * (i % 3), microseconds=n % 7 * 150_000)
                    if n % 6 == 1:  # the same instants in another zone
                        date = date.astimezone(timezone(timedelta(hours=2)))
                    message_pk = None if n % 17 == 0 else 1000 + n
                    relationship = (Relationship.REGISTERED, Relationship.INVITED, None)[n % 3]
                    extra = (
                        notice_extra(step.name, session.start - timedelta(days=2), relationship)
                        if step.kind is StepKind.NOTICE
                        else None
                    )
                    if n % 5 == 4:  # the two halves, as the service calls them
                        links = outgoing.links(message_pk, recipient.email)
                        rendered = outgoing.render(
                            step, session, recipient, links=links, extra=extra, sent_at=date
                        )
                        built = outgoing.build(
                            rendered,
                            step,
                            session,
                            recipient,
                            message_id=f"<{n}.{i}@example.org>",
                            date=date,
                            unsubscribe_url=links["unsubscribe_url"] if n % 2 else None,
                            sequence=n % 3,
                            cancelled=n % 11 == 0,
                            had_calendar=n % 4 != 0,
                        )
                    else:
                        built = outgoing.message(
                            step,
                            session,
                            recipient,
                            message_pk=message_pk,
                            message_id=f"<{n}.{i}@example.org>",
                            date=date,
                            extra=extra,
                            sequence=i % 3,
                            subject_prefix="[TEST] " if n % 13 == 0 else "",
                        )
                    out.append(built.data + b"\x00" + built.wire + (b"\x01" if built.utf8 else b"\x02"))
                i += 1
    return out[:count]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=4000, help="messages (default 4000)")
    parser.add_argument("--each", action="store_true", help="one digest per message")
    args = parser.parse_args()
    digest = hashlib.sha256()
    for n, data in enumerate(messages(args.n)):
        digest.update(len(data).to_bytes(8, "big") + data)
        if args.each:
            print(n, hashlib.sha256(data).hexdigest()[:16])
    print(f"{args.n} messages sha256 {digest.hexdigest()}")


if __name__ == "__main__":
    main()
