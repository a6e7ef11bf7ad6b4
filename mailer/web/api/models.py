"""The JSON API's request and response shapes (pydantic): validated on the way in, documented in
``/api/v1/openapi.json`` from these very classes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Limit = Field(default=100, ge=1, le=500, description="Items per page (1-500).")
MAX_ID = 2**31 - 1  # an SQL integer primary key (mailer.web.inputs.MAX_ID): a cursor beyond it is refused
Cursor = Field(
    default=None, ge=1, le=MAX_ID, description="next_cursor of the previous page; absent: the newest."
)


class Strict(BaseModel):
    """Unknown fields are refused (a typo is an error, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class StepOut(BaseModel):
    """One step of a session's timeline."""

    step: str
    kind: str
    audience: str
    at: datetime
    deadline: datetime
    deadline_reason: str
    recipients: int
    auto: bool


class SessionOut(BaseModel):
    """A session and its timeline."""

    id: str
    region: str
    start: datetime
    zone: str
    cancelled: bool
    timeline: list[StepOut]


class SessionList(BaseModel):
    """Every session with its timeline."""

    sessions: list[SessionOut]


class WaveOut(BaseModel):
    """A wave with its message counts by status."""

    id: int
    session: str
    step: str
    audience: str
    status: str
    counts: dict[str, int]
    total: int


class WaveList(BaseModel):
    """Waves with their message counts."""

    waves: list[WaveOut]


class WaveQuery(Strict):
    session: str = Field(default="", max_length=100)


class QueueIn(Strict):
    session: str = Field(max_length=100)
    step: str = Field(max_length=100)
    list: str | None = Field(default=None, max_length=64, description="Region list [default: the session's].")
    at: datetime | None = Field(default=None, description="Send time with an offset [default: the step's].")
    queue_late: bool = Field(
        default=False,
        description="Queue even if new messages would be past the step's deadline (logged as skipped); "
        "without it such a queuing is refused with 409 and nothing is queued.",
    )


class QueueOut(BaseModel):
    """What queuing did (idempotent: again adds only contacts who are new)."""

    wave: int
    created: bool
    added: int
    skipped: int
    scheduled_at: datetime
    deadline: datetime


class WaveChangeOut(BaseModel):
    """The wave after pause, resume or cancel, and the pending messages it touched."""

    wave: int
    status: str
    touched: int


# a message's statuses (mailer.store.models.MessageStatus), "" for any
LogStatus = Literal[
    "", "queued", "sending", "sent", "deferred", "failed", "bounced", "suppressed", "skipped", "held"
]


class LogQuery(Strict):
    session: str = Field(default="", max_length=200)
    step: str = Field(default="", max_length=200)
    status: LogStatus = ""
    language: str = Field(default="", max_length=200)
    region: str = Field(default="", max_length=200)
    address: str = Field(default="", max_length=200)
    q: str = Field(default="", max_length=200)
    wave: str = Field(default="", max_length=20, pattern="^[0-9]*$", description="A wave's id.")
    cursor: int | None = Cursor
    limit: int = Limit


class LogEntryOut(BaseModel):
    """One message of the delivery log."""

    id: int
    recipient: str
    session: str
    step: str
    language: str
    status: str
    attempts: int
    reply_code: int | None
    reply_text: str
    due_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    last_event: str


class LogPage(BaseModel):
    """A page of the delivery log, newest first."""

    items: list[LogEntryOut]
    next_cursor: int | None


class StepCounts(BaseModel):
    session: str
    step: str
    counts: dict[str, int]
    total: int


class ReportOut(BaseModel):
    """Counts per session and step by status, totals, and relays found unreachable."""

    steps: list[StepCounts]
    totals: dict[str, int]
    relays_down: list[str]


class ContactQuery(Strict):
    region: str = Field(default="", max_length=64)
    search: str = Field(default="", max_length=200)
    cursor: int | None = Cursor
    limit: int = Limit


class ContactOut(BaseModel):
    """A contact."""

    id: int
    email: str
    name: str
    title: str
    institution: str
    country: str
    language: str
    time_zone: str
    status: str


class ContactPage(BaseModel):
    """A page of contacts, newest first."""

    items: list[ContactOut]
    next_cursor: int | None


class ContactIn(Strict):
    email: str = Field(max_length=320)
    region: str = Field(max_length=64, description="The list the contact is put on.")
    name: str = Field(default="", max_length=300)
    title: str = Field(default="", max_length=100)
    institution: str = Field(default="", max_length=300)
    country: str = Field(default="", max_length=100)
    language: str = Field(default="", max_length=35)
    time_zone: str = Field(default="", max_length=64)


class ReplacedCell(BaseModel):
    """A cell the import could not use (the row was kept): what it held, what is used instead, and why."""

    line: int
    column: str
    value: str
    used: str
    problem: str


class ContactSaved(BaseModel):
    """The contact after adding or updating it (the file import's rules)."""

    outcome: Literal["created", "updated", "unchanged"]
    contact: ContactOut
    replaced: list[ReplacedCell] = Field(description="Cells not understood: the value used instead.")


class SuppressIn(Strict):
    email: str = Field(max_length=320)
    detail: str = Field(default="", max_length=2000)


class SuppressOut(BaseModel):
    """The address is on the suppression list."""

    email: str
    suppressed: bool


class RegistrationQuery(Strict):
    session: str = Field(default="", max_length=100)
    status: Literal["", "registered", "declined", "denied"] = ""
    cursor: int | None = Cursor
    limit: int = Limit


class RegistrationOut(BaseModel):
    """A contact's answer for a session."""

    id: int
    email: str
    session: str
    status: str
    registered_at: datetime | None
    source: str


class RegistrationPage(BaseModel):
    """A page of registrations, newest first."""

    items: list[RegistrationOut]
    next_cursor: int | None


class FileIn(Strict):
    filename: str = Field(max_length=200, pattern=r"^[\w.\- ]+$", description="The file's name, for reports.")
    content: str = Field(description="The file's text (CSV as exported by the organisers or the platform).")


class RejectedRow(BaseModel):
    line: int
    reason: str


class ImportOut(BaseModel):
    """What an import did, row by row (as `mailer contacts import` / `registrations import` report)."""

    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: list[RejectedRow]
    duplicates: int
    replaced: list[ReplacedCell] = Field(
        description="Cells not understood (contact files; the rows were imported)."
    )
