"""The command line's answers to wrong inputs: each a clear error or warning, never a traceback or a silent
fallback; the store a reading command opens must exist; waves say what state they are in."""

from __future__ import annotations

import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from mailer.app import App
from mailer.cli import main
from mailer.config import Security, check_public_links, load_settings
from mailer.errors import ConfigError
from mailer.store.engine import transaction
from mailer.store.models import Message, MessageStatus, Wave, WaveStatus
from tests.conftest import ROOT, RunningServer
from tests.factories import add_contact


@dataclass
class Run:
    """What ``mailer ARGS`` did: exit code, standard output and standard error."""

    code: int
    out: str
    err: str


def mailer(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Run:
    """Run the console entry point in this process, as the shell would (errors become messages and codes)."""
    monkeypatch.setattr(sys, "argv", ["mailer", *args])
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for variable in ("DATABASE_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "MAILER_REDIRECT_ALL_TO"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("MAILER_BASE_URL", raising=False)

    def invoke(*args: str, store: App | None = None) -> Run:
        base = ["--config", str(ROOT / "config")]
        if store is not None:
            base += ["--database-url", store.settings.database_url]
        return mailer(capsys, monkeypatch, *base, *args)

    return invoke


# --- one store unless told otherwise ---------------------------------------------------------------------------

READING_COMMANDS = [
    ["log"],
    ["report"],
    ["waves", "list"],
    ["sessions", "list"],
    ["contacts", "list"],
    ["contacts", "show", "ann@example.org"],
    ["users", "list"],
    ["suppressions", "list"],
    ["imports", "list"],
    ["preview", "--session", "africa-2021", "--step", "invitation", "--contact", "ann@example.org"],
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=" ".join)
def test_a_reading_command_refuses_a_store_that_does_not_exist(
    run, tmp_path: Path, command: list[str]
) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    result = run("--database-url", f"sqlite:///{missing}", *command)
    assert result.code == 2
    assert (
        f"error: no store at {missing} (the file does not exist): check --database-url or DATABASE_URL"
        in (result.err)
    )
    assert not missing.parent.exists()


def test_a_reading_command_refuses_an_empty_postgresql_database(run, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    result = run("--database-url", postgres_url, "log")
    assert result.code == 2
    assert "(the database holds no mailer tables): check --database-url" in result.err


@pytest.mark.parametrize(
    "command", [["log"], ["api-tokens", "create", "crm", "--scope", "read"]], ids=" ".join
)
@pytest.mark.parametrize("url", ["mysql://mailer@127.0.0.1/mailer", "mssql+pyodbc://mailer@127.0.0.1/mailer"])
def test_a_store_of_another_kind_is_refused_in_one_line(run, url: str, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    """A MySQL URL used to end in "ModuleNotFoundError: No module named 'MySQLdb'" and a traceback."""
    result = run("--database-url", url, *command)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.startswith(
        f"error: cannot open the store: {url.partition(':')[0].partition('+')[0]!r} is not a store the mailer"
        " keeps: use SQLite (sqlite:///...) or PostgreSQL (postgresql+psycopg://...)"
    ), result.err


def test_a_writing_command_still_makes_a_new_store(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "new" / "mailer.db"
    result = run("--database-url", f"sqlite:///{store}", "sessions", "sync")
    assert result.code == 0, result.err
    assert store.is_file()
    assert run("--database-url", f"sqlite:///{store}", "log").code == 0


# --- wrong inputs ----------------------------------------------------------------------------------------------


def test_log_limit_below_one_is_refused(run, app: App) -> None:  # type: ignore[no-untyped-def]
    result = run("log", "--limit", "-5", store=app)
    assert result.code == 2
    assert "Invalid value for '--limit': -5 is not in the range x>=1." in result.err


def test_suppressions_list_refuses_a_reason_the_service_never_writes(run, app: App) -> None:  # type: ignore[no-untyped-def]
    result = run("suppressions", "list", "--reason", "bogus", store=app)
    assert result.code == 2
    assert (
        "Error: Invalid value for '--reason': 'bogus' is not one of 'hard-bounce', 'complaint', 'soft-bounce', "
        "'unsubscribed', 'manual'." in result.err
    )
    assert run("suppressions", "list", "--reason", "complaint", store=app).out == "0 suppressed (complaint)\n"


def test_simulate_from_after_until_is_refused(run, app: App) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "simulate", "--from", "2022-03-01T00:00+00:00", "--until", "2022-02-01T00:00+00:00", store=app
    )
    assert result.code == 2
    assert (
        "Invalid value for --from: 2022-03-01T00:00+00:00 is not before --until 2022-02-01T00:00+00:00:"
        " the simulation would run no time at all" in result.err
    )


def test_a_follow_up_queued_years_after_its_session_is_refused(run, app: App) -> None:  # type: ignore[no-untyped-def]
    with transaction(app.factory) as db:
        add_contact(db, "ann@example.org", region="latin-america")
    result = run(
        "waves",
        "queue",
        "--session",
        "latin-america-2022",
        "--step",
        "follow-up",
        "--at",
        "2027-03-08T10:00",
        store=app,
    )
    assert result.code == 2
    assert (
        "Invalid value for --at: 2027-03-08 13:00 UTC is after the last moment follow-up of latin-america-2022"
        " may go, 2022-03-15 13:00 UTC (after it: too late); the session starts 2022-03-07 13:00 UTC:"
        " check the year and the session" in result.err
    )
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count(Message.id))) == 0


def test_preview_in_a_language_without_templates_says_what_it_falls_back_to(run) -> None:  # type: ignore[no-untyped-def]
    result = run("preview", "--session", "latin-america-2022", "--step", "reminder-1d", "--language", "xx")
    assert result.code == 0, result.err
    assert (
        "warning: no reminder-1d template in 'xx'; the preview falls back to es (its language family, then"
        " the latin-america region's chain; offered: en, es, fr, ar, pt, pt-PT)" in result.err
    )
    assert "Language: es (requested xx: fell back)" in result.out


def test_preview_in_an_offered_language_warns_of_nothing(run) -> None:  # type: ignore[no-untyped-def]
    result = run("preview", "--session", "latin-america-2022", "--step", "reminder-1d", "--language", "fr")
    assert (result.code, result.err) == (0, "")


def test_render_all_into_an_unwritable_folder_is_a_clear_error(run) -> None:  # type: ignore[no-untyped-def]
    result = run("templates", "render-all", "--out", "/proc/forbidden", "--session", "africa-2021")
    assert result.code == 1
    assert result.err.startswith("Error: cannot write to /proc/forbidden: ")
    assert "give --out a folder you can write to" in result.err and "Traceback" not in result.err


# --- waves -----------------------------------------------------------------------------------------------------


def _queue(run, app: App, step: str = "invitation", *extra: str) -> Run:  # type: ignore[no-untyped-def]
    """Queue ``step`` of latin-america-2022 now: past its deadline, so --queue-late unless ``extra`` is given."""
    return run(
        "waves",
        "queue",
        "--session",
        "latin-america-2022",
        "--step",
        step,
        *(extra or ["--queue-late"]),
        store=app,
    )


def test_wave_messages_say_the_state_and_are_spelled_right(run, app: App) -> None:  # type: ignore[no-untyped-def]
    with transaction(app.factory) as db:
        add_contact(db, "ann@example.org", region="latin-america")
    assert _queue(run, app).code == 0  # the 2022 step's deadline has passed: its one message is skipped
    done = run("waves", "pause", "1", store=app)
    assert (done.code, done.out) == (0, "wave 1 is done: 1 message, none pending; nothing to pause\n")
    with transaction(app.factory) as db:  # one message pending again: the wave can be paused
        db.execute(update(Message).values(status=MessageStatus.QUEUED))
    first = run("waves", "pause", "1", store=app)
    assert (first.code, first.out) == (
        0,
        "wave 1 (latin-america-2022 / invitation) paused: 1 pending message affected\n",
    )
    again = run("waves", "pause", "1", store=app)
    assert (again.code, again.out) == (0, "wave 1 is already paused: nothing changed\n")
    assert run("waves", "resume", "1", store=app).out.startswith(
        "wave 1 (latin-america-2022 / invitation) resumed:"
    )
    assert run("waves", "resume", "1", store=app).out == "wave 1 is already active: nothing changed\n"
    assert run("waves", "cancel", "1", "--yes", store=app).code == 0
    resumed = run("waves", "resume", "1", store=app)
    assert (resumed.code, resumed.err) == (1, "Error: wave 1 is cancelled and cannot be resumed\n")
    paused = run("waves", "pause", "1", store=app)
    assert (paused.code, paused.err) == (1, "Error: wave 1 is cancelled and cannot be paused\n")
    assert (
        run("waves", "cancel", "1", "--yes", store=app).out
        == "wave 1 is already cancelled: nothing changed\n"
    )


def test_a_wave_that_reaches_nobody_is_done_and_cannot_be_paused(run, app: App) -> None:  # type: ignore[no-untyped-def]
    queued = _queue(run, app)  # the latin-america list is empty
    assert queued.code == 0 and ": 0 messages queued (new wave)" in queued.out
    hidden = run("waves", "list", store=app)
    assert (hidden.code, hidden.out) == (
        0,
        "No waves with messages yet (1 reaches nobody: see --all). Queue one with `mailer waves queue"
        " --session S --step STEP`.\n",
    )
    shown = run("waves", "list", "--all", store=app)
    assert "│    1 │ latin-america-2022 │ invitation │ latin-america │ done  │     0 │" in shown.out
    refused = run("waves", "pause", "1", store=app)
    assert (refused.code, refused.out) == (
        0,
        "wave 1 is done: it reaches nobody (0 messages; its list had no one to send to); nothing to pause."
        " Queuing the step again once the list has contacts adds them to this wave\n",
    )
    with transaction(app.factory) as db:
        assert db.get(Wave, 1).status == WaveStatus.ACTIVE  # type: ignore[union-attr]


def test_queuing_a_cancelled_wave_again_says_so_and_adds_nobody(run, app: App) -> None:  # type: ignore[no-untyped-def]
    with transaction(app.factory) as db:
        add_contact(db, "ann@example.org", region="latin-america")
    assert _queue(run, app).code == 0
    assert run("waves", "cancel", "1", "--yes", store=app).code == 0
    with transaction(app.factory) as db:
        add_contact(db, "bob@example.org", region="latin-america")
    result = _queue(run, app)
    assert result.code == 1
    assert result.err == (
        "Error: wave 1 (latin-america-2022 / invitation to latin-america) was cancelled: nothing queued"
        " (a cancelled wave stays cancelled; see `mailer waves list`)\n"
    )
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count(Message.id))) == 1


def test_a_finished_wave_is_listed_done(run, app: App) -> None:  # type: ignore[no-untyped-def]
    with transaction(app.factory) as db:
        add_contact(db, "ann@example.org", region="latin-america")
        add_contact(db, "bob@example.org", region="latin-america")
    refused = _queue(run, app, "invitation", "--list", "latin-america")  # a 2022 step queued now: all late
    assert (refused.code, refused.err) == (
        1,
        "Error: 2 of the 2 new messages of latin-america-2022 / invitation would be past the step's deadline"
        " (2022-01-27 13:00 UTC) and skipped for good: nothing was queued. Check the send time and the session's date;"
        " to queue them as skipped anyway, add --queue-late\n",
    )
    with transaction(app.factory) as db:
        assert (db.scalar(select(func.count(Message.id))), db.scalar(select(func.count(Wave.id)))) == (0, 0)
    assert "2 of them skipped at once" in _queue(run, app).out
    listed = run("waves", "list", store=app)
    line = next(line for line in listed.out.splitlines() if "latin-america-2022" in line)
    assert [cell for cell in line.split() if cell.isalnum() or "-" in cell][1:] == [  # the id: a sequence's
        "latin-america-2022",
        "invitation",
        "latin-america",
        "done",
        "2",
        "2",
    ]


# --- SMTP security and public links ----------------------------------------------------------------------------


def test_smtp_security_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_SECURITY", "none")
    assert load_settings(ROOT / "config").smtp.security is Security.NONE
    monkeypatch.setenv("SMTP_SECURITY", "TLS")
    monkeypatch.setenv("SMTP_PORT", "465")
    settings = load_settings(ROOT / "config")
    assert (settings.smtp.security, settings.smtp.port) == (Security.TLS, 465)
    monkeypatch.setenv("SMTP_SECURITY", "ssl")
    with pytest.raises(ConfigError) as raised:
        load_settings(ROOT / "config")
    assert str(raised.value) == "$SMTP_SECURITY: unknown value 'ssl' (use none, starttls or tls)"


def test_send_test_to_a_server_without_starttls_is_a_configuration_error(
    run, monkeypatch: pytest.MonkeyPatch, smtp_server: RunningServer
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    args = ("send-test", "--session", "africa-2021", "--step", "invitation", "--to", "ann@example.org")
    refused = run(*args)
    assert refused.code == 2
    assert refused.err == (
        f"error: SMTP server default ({smtp_server.host}:{smtp_server.port}): security: 'starttls' is required"
        ' but the server does not offer STARTTLS (for a local test server without TLS set security = "none"'
        " in [smtp] or SMTP_SECURITY=none; a relay on another machine must offer STARTTLS, or use security ="
        ' "tls" on its port 465)\n'
    )
    assert smtp_server.messages == []
    monkeypatch.setenv("SMTP_SECURITY", "none")
    sent = run(*args)
    assert (sent.code, sent.out.splitlines()[-1]) == (0, "sent: 250 2.0.0 OK")
    assert len(smtp_server.messages) == 1


def test_send_test_in_a_language_without_templates_says_what_it_falls_back_to(
    run, monkeypatch: pytest.MonkeyPatch, smtp_server: RunningServer
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("SMTP_SECURITY", "none")
    args = [
        "send-test",
        "--session",
        "latin-america-2022",
        "--step",
        "reminder-1d",
        "--to",
        "ann@example.org",
    ]
    sent = run(*args, "--language", "xx")
    assert (sent.code, sent.out.splitlines()[-1]) == (0, "sent: 250 2.0.0 OK")
    assert sent.err == (
        "warning: no reminder-1d template in 'xx'; the test message falls back to es (its language family,"
        " then the latin-america region's chain; offered: en, es, fr, ar, pt, pt-PT)\n"
    )
    assert smtp_server.messages[0].parsed()["Content-Language"] == "es"
    offered = run(*args, "--language", "fr")
    assert (offered.code, offered.err) == (0, "")


RELAY_REFUSAL = (
    "web.base_url: 'http://127.0.0.1:8080' is a loopback address, but mail goes out through"
    " smtp.example.org:587: every message would link participants to http://127.0.0.1:8080/..., which they"
    " cannot open and spam filters score (set [web] base_url or $MAILER_BASE_URL to the public https address"
    " of the pages, e.g. https://mailer.example.org; for a rehearsal set $MAILER_REDIRECT_ALL_TO to your own"
    " address)"
)


@pytest.mark.parametrize(
    "command",
    [
        ["send-test", "--session", "africa-2021", "--step", "invitation", "--to", "ann@example.org"],
        ["simulate", "--until", "2021-06-01T00:00+00:00"],
    ],
    ids=lambda command: command[0],
)
def test_a_real_relay_with_a_loopback_base_url_stops_before_sending(
    run, monkeypatch: pytest.MonkeyPatch, app: App, command: list[str]
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SMTP_HOST", "smtp.example.org")
    result = run(*command, store=app)
    assert result.code == 2
    assert result.err == f"error: {ROOT / 'config' / 'mailer.toml'}: {RELAY_REFUSAL}\n"


def test_the_service_does_not_start_with_a_relay_and_a_loopback_base_url(tmp_path: Path) -> None:
    import os
    import subprocess

    env = {
        **os.environ,
        "SMTP_HOST": "smtp.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'mailer.db'}",
        "MAILER_CONFIG": str(ROOT / "config"),
    }
    env.pop("MAILER_REDIRECT_ALL_TO", None)
    env.pop("MAILER_BASE_URL", None)
    finished = subprocess.run(
        [sys.executable, str(ROOT / "schedule.py")],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert f"error: {ROOT / 'config' / 'mailer.toml'}: {RELAY_REFUSAL}" in finished.stderr
    assert not (tmp_path / "mailer.db").exists()


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"SMTP_HOST": "smtp.example.org"}, True),
        ({"SMTP_HOST": "smtp.example.org", "MAILER_BASE_URL": "http://mailer.example.org"}, True),
        ({"SMTP_HOST": "smtp.example.org", "MAILER_BASE_URL": "https://localhost:8443"}, True),
        ({"SMTP_HOST": "smtp.example.org", "MAILER_BASE_URL": "https://mailer.example.org"}, False),
        ({"SMTP_HOST": "smtp.example.org", "MAILER_REDIRECT_ALL_TO": "olga@example.org"}, False),
        ({"SMTP_HOST": "127.0.0.1"}, False),
        ({"SMTP_HOST": "localhost"}, False),
        ({}, False),
    ],
)
def test_public_links_are_required_only_through_a_real_relay_outside_a_rehearsal(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], refused: bool
) -> None:
    for variable in ("SMTP_HOST", "MAILER_BASE_URL", "MAILER_REDIRECT_ALL_TO"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(ROOT / "config")
    if refused:
        with pytest.raises(ConfigError, match=r"web\.base_url"):
            check_public_links(settings)
    else:
        check_public_links(settings)


# --- the demo --------------------------------------------------------------------------------------------------


def test_the_demo_prints_how_to_browse_its_store_and_keeps_accounts(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "project"
    shutil.copytree(ROOT / "config", project / "config")
    (project / "templates").symlink_to(ROOT / "templates")
    contacts = tmp_path / "contacts"
    contacts.mkdir()
    settings = load_settings(project / "config")
    for number, session in enumerate(settings.series.sessions):
        (contacts / f"{session.region}.csv").write_text(
            f"Email,First name\nperson{number}@example.org,Person {number}\n", encoding="utf-8"
        )
    store = project / "var" / "demo" / "mailer.db"
    url = f"sqlite:///{store}"

    def demo() -> Run:
        return run("--config", str(project / "config"), "demo", "--contacts", str(contacts))

    first = demo()
    assert first.code == 0, first.err
    assert f"Browse the results on the web pages: ./run mailer --database-url {url} web" in first.out
    assert f"(make an account first: ./run mailer --database-url {url} users add NAME" in first.out
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    added = run(
        "--database-url",
        url,
        "users",
        "add",
        "olga",
        "--role",
        "organiser",
        "--email",
        "olga@example.org",
        "--password-stdin",
    )
    assert added.code == 0, added.err
    second = demo()
    assert second.code == 0, second.err
    assert "dashboard accounts kept from the last run: olga" in second.out
    listed = run("--database-url", url, "users", "list")
    assert "olga" in listed.out and "organiser" in listed.out


# --- contact files ---------------------------------------------------------------------------------------------


def test_a_10001_character_name_is_cut_to_300_with_a_replaced_line(run, app: App, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    contacts = tmp_path / "long.csv"
    contacts.write_text(f"Email,First name\nann@example.org,{'A' * 10_001}\n", encoding="utf-8")
    result = run("contacts", "import", str(contacts), "--region", "africa", store=app)
    assert result.code == 0, result.err
    assert "  replaced        1  (cells not understood; the rows were imported)" in result.out
    assert (
        f"  line 2: name '{'A' * 40}…' is 10,001 characters long, more than the 300 kept;"
        " the first 300 characters used" in result.out
    )
    shown = run("contacts", "show", "ann@example.org", store=app)
    assert f"name            {'A' * 300}\n" in shown.out


@pytest.mark.parametrize(
    ("entries", "kind"),
    [
        ({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}, "an Excel workbook (.xlsx)"),
        (
            {"mimetype": "application/vnd.oasis.opendocument.spreadsheet", "content.xml": "<x/>"},
            "an OpenDocument spreadsheet (.ods)",
        ),
        (None, "an Excel 97-2003 workbook (.xls)"),
    ],
    ids=["xlsx", "ods", "xls"],
)
def test_a_workbook_renamed_csv_is_named_as_such(  # type: ignore[no-untyped-def]
    run, app: App, tmp_path: Path, entries: dict[str, str] | None, kind: str
) -> None:
    import zipfile

    workbook = tmp_path / "contacts.csv"
    if entries is None:
        workbook.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504))
    else:
        with zipfile.ZipFile(workbook, "w") as archive:
            for name, text in entries.items():
                archive.writestr(name, text)
    result = run("contacts", "import", str(workbook), "--region", "africa", store=app)
    assert result.code == 2
    assert result.err == (
        f"error: contacts.csv: this is {kind}, not a CSV file: open it in Excel or LibreOffice and save it as"
        ' "CSV UTF-8 (comma delimited)", then import the .csv\n'
    )


def test_a_file_no_encoding_decodes_is_named(run, app: App, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "contacts.csv"
    broken.write_bytes(b"email\nann@example.org\n\x81\x8d\n")  # bytes neither UTF-8 nor cp1252 assigns
    result = run("contacts", "import", str(broken), "--region", "africa", store=app)
    assert result.code == 2
    assert (
        result.err
        == "error: contacts.csv: cannot decode the file as utf-8 or cp1252: save it as UTF-8 and retry\n"
    )


def test_a_statement_the_server_stops_is_not_called_a_store_that_cannot_be_opened(  # type: ignore[no-untyped-def]
    run, app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL answered (here: every statement cancelled after 1 ms, as a deadlock or a lock timeout would
    end one): the store is reachable, so the advice is to run the command again, not to check the URL."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("a server-side statement timeout")
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("email\n" + "".join(f"p{i}@example.org\n" for i in range(2000)), encoding="utf-8")
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=1")
    result = run("contacts", "import", str(contacts), "--region", "africa", store=app)
    assert result.code == 2
    assert result.err == (
        "error: the store stopped this command: canceling statement due to statement timeout. What it committed"
        " before stays; run the command again (an import goes on where it stopped, nothing is doubled)\n"
    )
