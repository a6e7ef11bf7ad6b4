"""Start-up is safe in any number: 5 service processes started at once on an empty PostgreSQL database.

Migrations (an advisory lock), session sync (an advisory lock) and materialisation (an advisory lock per step,
INSERT ... ON CONFLICT) each happen once; no process fails with an IntegrityError.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from mailer.store.engine import head_revision
from mailer.store.models import SessionRow, Wave
from tests.crash_runs import drop_database, fresh_database
from tests.service_processes import ServiceProcess, wait_until, write_live_config

PROCESSES = 5


def test_five_processes_start_together_on_an_empty_postgresql_database(
    tmp_path: Path, postgres_url: str
) -> None:
    url = fresh_database(postgres_url, postgres_url.rsplit("/", 1)[-1] + "_startup")
    config = write_live_config(tmp_path)
    processes = [
        ServiceProcess(config, url, 9, tmp_path / f"service-{n}.log") for n in range(PROCESSES)
    ]  # port 9 (discard): no message is due, nothing is sent

    def ticked(process: ServiceProcess) -> bool:
        return "executed successfully" in process.log_path.read_text()

    try:
        assert wait_until(lambda: all(ticked(p) for p in processes), 120), [
            p.log_path.read_text()[-2000:] for p in processes if not ticked(p)
        ]
    finally:
        codes = [process.terminate() for process in processes]
    logs = [process.log_path.read_text() for process in processes]
    assert codes == [0] * PROCESSES
    assert [log.count("service started") for log in logs] == [1] * PROCESSES
    assert not [log for log in logs if "IntegrityError" in log or "Traceback" in log]
    engine = create_engine(url)
    with engine.connect() as connection:
        sessions = connection.scalar(select(func.count()).select_from(SessionRow))
        waves = connection.execute(select(Wave.session_id, Wave.step)).all()
        version = connection.scalar(text("SELECT version_num FROM alembic_version"))
    engine.dispose()
    drop_database(url)
    assert sessions == 4
    # Each due step materialised exactly once: the African session's invitation (due a minute ago) and
    # every step of the three sessions of the shipped series that are over.
    steps = ("follow-up", "invitation", "invitation-2", "reminder-1d", "reminder-1h", "reminder-1w")
    past = ("asia-pacific-2021", "caribbean-2021", "latin-america-2022")
    expected = [("africa-2021", "invitation")] + [(session, step) for session in past for step in steps]
    assert sorted(tuple(wave) for wave in waves) == expected
    assert version == head_revision()
