"""CPU per message of what a sending worker does before SMTP: signed links, render, build (calendar and
bytes), as :meth:`mailer.service.Service._deliver` calls them, for the throughput bench's mix (an
invitation wave to contacts in four languages, Africa/Lagos).

    .venv/bin/python bench/compose_rate.py [-n 4000] [--rounds 5]
    cd ../ref && COMPOSE_ROOT=$PWD .venv/bin/python ../compose/bench/compose_rate.py   # main's code

Prints microseconds of process CPU per message for links, render and build, the best of ``--rounds``
(the first round fills the caches, as a worker's first messages do).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(os.environ.get("COMPOSE_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))
os.environ["MAILER_SECRET_KEY"] = "compose-rate-fixed-key-0123456789abcdefghijklmnopqr"

from mailer.compose.outgoing import Outgoing  # noqa: E402
from mailer.config import load_settings  # noqa: E402
from mailer.store.recipient import Recipient  # noqa: E402

LANGUAGES = ("en", "es", "fr", "ar")
NAMES = ("Amina Diallo", "José Núñez", "Hélène Dubois", "محمد العلي", "Grace Mensah", "Kofi Boateng")
AT = datetime(2021, 6, 1, 13, 1, tzinfo=UTC)


def main() -> None:
    if os.environ.get("NO_GC"):
        import gc

        gc.disable()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings(ROOT / "config", database_url="sqlite:///:memory:")
    outgoing = Outgoing(settings)
    series = settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    people = [
        Recipient(
            email=f"person{i:06d}@example.org",
            name=NAMES[i % len(NAMES)],
            title="Hon." if i % 3 == 0 else "",
            institution="Parliament",
            country="NG",
            language=LANGUAGES[i % 4],
            time_zone="Africa/Lagos",
            region="africa",
        )
        for i in range(args.n)
    ]
    best = [float("inf")] * 3
    for r in range(args.rounds):
        dates = [AT + timedelta(seconds=(r * args.n + i) // 500) for i in range(args.n)]  # as in a wave
        t0 = time.process_time()
        links = [outgoing.links(r * args.n + i + 1, person.email) for i, person in enumerate(people)]
        t1 = time.process_time()
        rendered = [
            outgoing.render(step, session, person, links=links[i], extra={}, sent_at=dates[i])
            for i, person in enumerate(people)
        ]
        t2 = time.process_time()
        for i, person in enumerate(people):
            outgoing.build(
                rendered[i],
                step,
                session,
                person,
                message_id=f"<{r}.{i}@example.org>",
                date=dates[i],
                unsubscribe_url=links[i]["unsubscribe_url"],
            )
        t3 = time.process_time()
        best = [min(b, s) for b, s in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True)]
    micro = [1e6 * s / args.n for s in best]
    print(
        f"us/message: links {micro[0]:.1f}  render {micro[1]:.1f}  build {micro[2]:.1f}  total {sum(micro):.1f}"
    )


if __name__ == "__main__":
    main()
