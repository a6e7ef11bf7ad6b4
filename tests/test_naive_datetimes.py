"""A naive datetime raises NaiveDatetimeError everywhere (README "Time"): every public function and method of
the package with a parameter annotated ``datetime`` (found by inspecting signatures, not a hand list) is called
with a naive one there and valid values elsewhere. A ``Session`` cannot even be made with a naive start.

Records (dataclass constructors) are not functions and are left out, as are SQLAlchemy's type hooks (the engine
calls them with database values). A new parameter type needs a sample in
``_sample`` below: the walk fails naming it rather than skipping the function."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib
import inspect
import io
import pkgutil
import types
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import Enum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from rich.console import Console
from sqlalchemy.types import TypeDecorator

import mailer
from mailer.app import App, open_app
from mailer.audience.addresses import Address
from mailer.audience.contact_rows import ContactRow
from mailer.audience.pushed import Action, RegistrationEvent
from mailer.compose.outgoing import Outgoing, sample_links
from mailer.compose.render import Rendered, Renderer
from mailer.compose.wording import Wording
from mailer.config import Series, Session, Settings, Step, load_settings
from mailer.config.providers import ProviderWebhook
from mailer.delivery.handling import Policy
from mailer.delivery.providers.ses import Certificates
from mailer.delivery.reports import Report
from mailer.delivery.transport import StoredCircuit
from mailer.errors import NaiveDatetimeError
from mailer.store.models import ReportKind, StaffUser
from mailer.store.outbox.checks import SendTimeFacts
from mailer.store.recipient import Recipient
from mailer.store.relays import CircuitState
from mailer.timeline.plan import Deadline, SkipReason
from mailer.web.sessions import SessionPolicy
from tests.conftest import ROOT

NAIVE = datetime(2022, 3, 6, 9, 0)
AWARE = datetime(2022, 3, 6, 9, 0, tzinfo=UTC)
SETTINGS = load_settings(ROOT / "config", database_url="sqlite:///:memory:")
SESSION = SETTINGS.series.session("latin-america-2022")
LOCAL_STEP = dataclasses.replace(SETTINGS.series.step("reminder-1d"), local_time=time(9, 0))
RECIPIENT = Recipient(
    "ana@example.org",
    "Ana",
    country="BR",
    language="pt-BR",
    time_zone="America/Sao_Paulo",
    region="latin-america",
)


def _datetime_hint(hint: Any) -> bool:
    return hint is datetime or (
        isinstance(hint, types.UnionType | typing._UnionGenericAlias)  # type: ignore[attr-defined]
        and datetime in typing.get_args(hint)
    )


def _callables() -> Iterator[tuple[str, Callable[..., Any], type | None]]:
    """(qualified name, function, owning class or None) for every public function and method of the package."""
    for info in pkgutil.walk_packages(mailer.__path__, "mailer."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            function = inspect.unwrap(value) if callable(value) else value
            if inspect.isfunction(function):
                yield f"{module.__name__}.{name}", function, None
            elif (
                inspect.isclass(value)
                and not dataclasses.is_dataclass(value)
                and not issubclass(value, TypeDecorator)
                and not getattr(value, "_is_protocol", False)  # a Protocol's methods are declarations
            ):
                for method_name, method in vars(value).items():
                    if (method_name == "__init__" or not method_name.startswith("_")) and inspect.isfunction(
                        method
                    ):
                        yield f"{module.__name__}.{name}.{method_name}", method, value


def _type_checking_names(module: types.ModuleType) -> dict[str, Any]:
    """The names a module imports only under ``if TYPE_CHECKING:`` (kept out of start-up), imported here."""
    names: dict[str, Any] = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            exec(compile(ast.Module(body=node.body, type_ignores=[]), str(module.__file__), "exec"), names)
    return names


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except NameError:  # a TYPE_CHECKING-only import: resolve with the module's names plus common ones
        module = importlib.import_module(function.__module__)
        namespace = {**vars(module), **_type_checking_names(module), "Any": Any}
        return typing.get_type_hints(function, globalns=namespace)


def _targets() -> list[tuple[str, Callable[..., Any], type | None, str]]:
    found = []
    for name, function, owner in _callables():
        hints = _hints(function)
        for parameter in inspect.signature(function).parameters:
            hint = hints.get(parameter)
            if _datetime_hint(hint):
                found.append((name, function, owner, parameter))
    return found


TARGETS = _targets()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    folder = tmp_path_factory.mktemp("naive")
    app = open_app(dataclasses.replace(SETTINGS, database_url=f"sqlite:///{folder / 'store.db'}"))
    yield app
    app.close()


def _sample(hint: Any, name: str, app: App, folder: Path) -> Any:
    """A valid value for a parameter annotated ``hint``; KeyError when there is none."""
    if hint is Session:
        return SESSION
    if hint is Step:
        return LOCAL_STEP
    if hint is Series:
        return SETTINGS.series
    if hint is Settings:
        return app.settings
    if hint is App:
        return app
    if hint is Recipient:
        return RECIPIENT
    if hint is tzinfo:
        return ZoneInfo("America/Sao_Paulo")
    if hint is Locale:
        return Locale.parse("pt_BR")
    if hint is Path:
        (folder / "empty.csv").write_text("email\n", encoding="utf-8")
        return folder / "empty.csv"
    if hint is bytes:
        return b"From: mailer-daemon@example.org\r\n\r\nnot a report\r\n"
    if hint is Policy:
        return Policy()
    if hint is Report:
        return Report(kind=ReportKind.HARD)
    if hint is ProviderWebhook:
        return ProviderWebhook("ses")
    if hint is Certificates:
        return Certificates(lambda url: b"")
    if hint is CircuitState:
        return CircuitState("127.0.0.1:25", "main", False, 0, None, None, "")
    if hint is SendTimeFacts:
        return SendTimeFacts(set(), {}, set())
    if hint is StaffUser:
        return StaffUser(username="olga", password_hash="x", active=True)
    if hint is SessionPolicy:
        return SessionPolicy()
    if hint is str or hint == str | None:
        return {
            "recipient_zone": "Asia/Kathmandu",
            "zone_name": "America/Sao_Paulo",
            "local_zone": "Asia/Kathmandu",
            "session_zone": "America/Sao_Paulo",
            "language": "pt-BR",
            "session_id": SESSION.id,
            "region": SESSION.region,
            "audience": SESSION.region,
            "step_name": "reminder-1d",
            "unsubscribe_url": "https://example.org/u/x",
        }.get(name, "x")
    if hint is int or hint == int | None:
        return 1
    if hint is timedelta:
        return timedelta(minutes=5)
    if hint is Any:
        return None
    if isinstance(hint, type) and issubclass(hint, Enum):
        return next(iter(hint))
    if hint is Console:
        return Console(file=io.StringIO())
    if hint is Rendered:
        outgoing = Outgoing(app.settings, Renderer(app.settings))
        return outgoing.render(LOCAL_STEP, SESSION, RECIPIENT, links=sample_links(app.settings))
    if name == "links":
        return sample_links(app.settings)
    if name == "extra":
        return None
    if hint is ContactRow:
        address = Address("someone@example.org", "someone@example.org", False)
        return ContactRow(1, address, "", "", "", "", "en", False, "UTC", False)
    if hint is RegistrationEvent:
        return RegistrationEvent(
            "generic", "e1", Action.CREATED, SESSION.id, "someone@example.org", "", "", "", "", AWARE
        )
    if hint is Deadline:
        return Deadline(AWARE, SkipReason.TOO_LATE)
    if hint is Wording:
        return Renderer(app.settings).wording["pt"]
    if hint is bool:
        return False
    text = str(hint)
    if text.startswith("psycopg.Connection"):
        return None  # a PostgreSQL driver connection: the time is refused before the connection is used
    if "sessionmaker" in text:
        return app.factory
    if "orm.session.Session" in text:
        return app.factory()
    if "Iterator" in text:
        return iter(())
    if "Sequence" in text or "Iterable" in text or text.startswith("list"):
        return []
    if "Mapping" in text or text.startswith("dict"):
        return {}
    if hint is datetime or _datetime_hint(hint):
        return AWARE
    raise KeyError(f"no sample for {name}: {hint}")


def _instance(owner: type, app: App, folder: Path) -> Any:
    if owner is Outgoing:
        return Outgoing(app.settings, Renderer(app.settings))
    if owner is Renderer:
        return Renderer(app.settings)
    from mailer.compose.localise import DateWords
    from mailer.compose.wire import Composer
    from mailer.service import Service
    from mailer.timeline.clock import VirtualClock

    makers: dict[type, Callable[[], Any]] = {
        DateWords: lambda: DateWords(Locale.parse("en"), UTC, UTC),
        Composer: lambda: Composer(
            app.settings.sender, list_id="x.example.org", unsubscribe_mailto="unsubscribe@example.org"
        ),
        Service: lambda: Service(app, VirtualClock(AWARE)),
        VirtualClock: lambda: VirtualClock(AWARE),
        Certificates: lambda: Certificates(lambda url: b""),
        StoredCircuit: lambda: StoredCircuit(app.factory, "127.0.0.1:25"),
    }
    return makers[owner]()


@pytest.mark.parametrize(
    ("function", "owner", "parameter"),
    [(function, owner, parameter) for _, function, owner, parameter in TARGETS],
    ids=[f"{name}:{parameter}" for name, _, _, parameter in TARGETS],
)
def test_a_naive_datetime_raises(
    store: App, tmp_path: Path, function: Callable[..., Any], owner: type | None, parameter: str
) -> None:
    hints = _hints(function)
    arguments: dict[str, Any] = {}
    for name, spec in inspect.signature(function).parameters.items():
        if name == "self":
            continue
        if name == parameter:
            arguments[name] = NAIVE
        elif spec.default is inspect.Parameter.empty:
            arguments[name] = _sample(hints.get(name), name, store, tmp_path)
    target = getattr(_instance(owner, store, tmp_path), function.__name__) if owner is not None else function
    with pytest.raises(NaiveDatetimeError):
        result = target(**arguments)
        if inspect.iscoroutine(result):
            asyncio.run(result)


def test_the_walk_finds_the_functions_of_the_issue() -> None:
    names = {(name, parameter) for name, _, _, parameter in TARGETS}
    assert ("mailer.timeline.plan.message_due", "scheduled_at") in names
    assert ("mailer.timeline.plan.hold_for_window", "due") in names
    assert ("mailer.compose.localise.session_times", "start") in names


def test_a_session_with_a_naive_start_cannot_be_made() -> None:
    # Issue 13 case 6: a naive session start on a local_time step was read in the process's zone (TZ).
    with pytest.raises(NaiveDatetimeError):
        dataclasses.replace(SESSION, start=SESSION.start.replace(tzinfo=None))
