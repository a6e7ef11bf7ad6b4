"""``series.toml``: the series, its sessions and the timeline of steps every session follows."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path

from mailer.config.reader import TableReader, read_toml
from mailer.config.texts import SessionTexts, read_texts, texts_in
from mailer.config.times import Offset, parse_clock_time, parse_offset
from mailer.errors import NaiveDatetimeError
from mailer.zones import resolve_zone


class StepKind(StrEnum):
    """What a step is for; also the template folder name by default."""

    INVITATION = "invitation"  # ask list members to register
    REMINDER = "reminder"  # tell registrants the session is coming
    FOLLOW_UP = "follow-up"  # thank participants after the session
    NOTICE = "notice"  # a change: date changed, cancelled


class Audience(StrEnum):
    """Who a step's wave goes to."""

    LIST = "list"  # every member of the session's region list
    LIST_UNREGISTERED = "list-unregistered"  # list members not registered (and not declined)
    REGISTRANTS = "registrants"  # contacts registered for the session
    INVITED = "invited"  # contacts who were sent an invitation for the session, or registered
    CALENDAR = "calendar"  # registrants and everyone sent the session's event in a calendar REQUEST


@dataclass(frozen=True)
class Step:
    """A point on each session's timeline."""

    name: str
    kind: StepKind
    offset: Offset
    template: str
    audience: Audience
    auto: bool
    max_late: timedelta
    local_time: time | None = None  # send at this wall-clock time in the recipient's zone (day offsets only)
    send_window: tuple[time, time] | None = None  # recipient-local hours mail may go out: (opens, closes)


@dataclass(frozen=True)
class Session:
    """One webinar. ``start`` is aware, in the session's own zone (``zone_name``); a naive one raises
    NaiveDatetimeError."""

    id: str
    region: str
    title: str
    start: datetime
    zone_name: str
    duration: timedelta
    join_url: str
    languages: tuple[str, ...]
    agenda: tuple[str, ...]
    cancelled: bool = False
    description: str = ""
    materials_text: str = ""
    texts: tuple[tuple[str, SessionTexts], ...] = ()  # per language, see mailer.config.texts

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise NaiveDatetimeError(f"session {self.id}: start must be timezone-aware, got {self.start}")

    @property
    def zone(self) -> tzinfo:
        return resolve_zone(self.zone_name)

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def base_texts(self) -> SessionTexts:
        """The top-level texts (in :data:`mailer.config.texts.BASE_LANGUAGE`)."""
        return SessionTexts(self.title, self.agenda, self.description, self.materials_text)

    def texts_for(self, chain: Iterable[str]) -> tuple[SessionTexts, str]:
        """The texts for a reader with language chain ``chain`` and their language (see :func:`texts_in`)."""
        return texts_in(self.texts, self.base_texts, chain)


@dataclass(frozen=True)
class Series:
    """The sessions sharing templates and a timeline."""

    id: str
    title: str
    organisers: tuple[str, ...]
    materials_url: str
    sessions: tuple[Session, ...]
    steps: tuple[Step, ...]

    def session(self, session_id: str) -> Session:
        for session in self.sessions:
            if session.id == session_id:
                return session
        known = ", ".join(s.id for s in self.sessions)
        raise KeyError(f"unknown session {session_id!r} (known: {known})")

    def step(self, step_name: str) -> Step:
        for step in self.steps:
            if step.name == step_name:
                return step
        known = ", ".join(s.name for s in self.steps)
        raise KeyError(f"unknown step {step_name!r} (known: {known})")


_DEFAULT_MAX_LATE = {
    StepKind.INVITATION: "3d",
    StepKind.REMINDER: "12h",
    StepKind.FOLLOW_UP: "7d",
    StepKind.NOTICE: "30d",
}


def load_series(path: Path, regions: Collection[str], templates_dir: Path, lateness: TableReader) -> Series:
    """Read ``series.toml`` at ``path``: every session's region must be one of ``regions`` (ids), every
    step's template a folder under ``templates_dir``; ``lateness`` (``[lateness]`` of mailer.toml) gives each
    step kind's default ``max_late``. Raises ConfigError naming the file, the key and the fix."""
    root = TableReader(path, read_toml(path))
    head = root.table("series")
    max_late_by_kind = {kind: lateness.duration(kind.value, _DEFAULT_MAX_LATE[kind]) for kind in StepKind}

    steps: list[Step] = []
    for index, raw in enumerate(root.get("steps", list)):
        reader = TableReader(path, raw, f"steps[{index}].")
        name = reader.get("name", str)
        kind_text = reader.get("kind", str)
        try:
            kind = StepKind(kind_text)
        except ValueError:
            options = ", ".join(k.value for k in StepKind)
            raise reader.fail("kind", f"unknown step kind {kind_text!r}", f"use one of {options}") from None
        offset_text = reader.get("offset", str)
        try:
            offset = parse_offset(offset_text)
        except ValueError:
            raise reader.fail(
                "offset",
                f"bad offset {offset_text!r}",
                "write a sign, a number and w/d/h/m, e.g. '-6w' or '+1d'",
            ) from None
        audience_text = reader.get("audience", str)
        try:
            audience = Audience(audience_text)
        except ValueError:
            options = ", ".join(a.value for a in Audience)
            raise reader.fail(
                "audience", f"unknown audience {audience_text!r}", f"use one of {options}"
            ) from None
        template = reader.get("template", str, kind.value)
        if not (templates_dir / template).is_dir():
            raise reader.fail(
                "template",
                f"no template folder {templates_dir / template}",
                "create it, name an existing one, or set templates_dir in mailer.toml (relative paths there start "
                "at the config folder's parent)",
            )
        local_time = send_window = None
        local_text = reader.get("local_time", str, "")
        if local_text:
            try:
                local_time = parse_clock_time(local_text)
            except ValueError:
                raise reader.fail(
                    "local_time", f"bad time {local_text!r}", "write 24-hour 'HH:MM', e.g. '09:00'"
                ) from None
            if not offset.calendar_days:
                raise reader.fail("local_time", "needs an offset in days or weeks", "e.g. offset = '-2d'")
        window_text = reader.get("send_window", str, "")
        if window_text:
            try:
                opens, closes = (parse_clock_time(part) for part in window_text.split("-"))
            except ValueError:
                raise reader.fail(
                    "send_window", f"bad window {window_text!r}", "write 'HH:MM-HH:MM', e.g. '08:00-20:00'"
                ) from None
            if opens >= closes:
                raise reader.fail("send_window", "opens after it closes", "write the earlier time first")
            send_window = (opens, closes)
        if any(step.name == name for step in steps):
            raise reader.fail("name", f"duplicate step name {name!r}", "step names must be unique")
        steps.append(
            Step(
                name=name,
                kind=kind,
                offset=offset,
                template=template,
                audience=audience,
                auto=reader.get("auto", bool, kind is not StepKind.INVITATION),
                max_late=reader.duration("max_late", None) or max_late_by_kind[kind],
                local_time=local_time,
                send_window=send_window,
            )
        )
        reader.refuse_unknown()

    sessions: list[Session] = []
    for index, raw in enumerate(root.get("sessions", list)):
        reader = TableReader(path, raw, f"sessions[{index}].")
        session_id = reader.get("id", str)
        region = reader.get("region", str)
        if region not in regions:
            raise reader.fail("region", f"unknown region {region!r}", "add it under [regions] in mailer.toml")
        zone_name = reader.zone("zone")
        start_text = reader.get("start", str)
        try:
            naive = datetime.fromisoformat(start_text)
        except ValueError:
            raise reader.fail(
                "start", f"bad date-time {start_text!r}", "write e.g. '2021-07-13T10:00'"
            ) from None
        if naive.tzinfo is not None:
            raise reader.fail(
                "start", "carries its own offset", "give the local time and put the zone in `zone`"
            )
        base = SessionTexts(
            title=reader.header_text("title"),
            agenda=reader.strings("agenda", ()),
            description=reader.get("description", str, ""),
            materials_text=reader.get("materials_text", str, ""),
        )
        sessions.append(
            Session(
                id=session_id,
                region=region,
                title=base.title,
                start=naive.replace(tzinfo=resolve_zone(zone_name)),
                zone_name=zone_name,
                duration=timedelta(minutes=reader.get("duration_minutes", int)),
                join_url=reader.get("join_url", str),
                languages=reader.strings("languages", ("en",)),
                agenda=base.agenda,
                cancelled=reader.get("cancelled", bool, False),
                description=base.description,
                materials_text=base.materials_text,
                texts=read_texts(reader, base),
            )
        )
        reader.refuse_unknown()
    if len({s.id for s in sessions}) != len(sessions):
        raise root.fail("sessions", "duplicate session id", "give each session a unique id")

    series = Series(
        id=head.header_text("id"),
        title=head.header_text("title"),
        organisers=head.header_strings("organisers", ()),
        materials_url=head.get("materials_url", str, ""),
        sessions=tuple(sessions),
        steps=tuple(steps),
    )
    root.refuse_unknown()
    return series
