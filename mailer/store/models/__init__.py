"""SQLAlchemy 2.0 typed models: the store is the source of truth (DESIGN invariant 1).

One module a group of tables (``audience``, ``waves``, ``outbox``, ``reports``, ``access``, ``intake``) over the one
declarative base (``base``); every name is re-exported here. Every timestamp column is
:class:`UTCDateTime`: aware datetimes in, aware UTC datetimes out, naive refused.
"""

from mailer.store.models.access import ApiToken, StaffRole, StaffSession, StaffUser, TokenScope
from mailer.store.models.audience import (
    Contact,
    ContactList,
    ContactStatus,
    ListMembership,
    Registration,
    RegistrationStatus,
    SessionRow,
)
from mailer.store.models.base import Base, UTCDateTime
from mailer.store.models.intake import (
    ImportChange,
    ImportChangeKind,
    ImportKind,
    ImportRecord,
    ImportRun,
    WebhookEvent,
)
from mailer.store.models.outbox import (
    PENDING_STATUSES,
    DeliveryEvent,
    EventKind,
    Message,
    MessageIdLookup,
    MessageStatus,
    message_id_among,
    message_status_is,
)
from mailer.store.models.reports import (
    BounceReport,
    RateSlot,
    RelayCircuit,
    ReportKind,
    Suppression,
    SuppressionLift,
)
from mailer.store.models.waves import Wave, WaveStatus

__all__ = [
    "PENDING_STATUSES",
    "ApiToken",
    "Base",
    "BounceReport",
    "Contact",
    "ContactList",
    "ContactStatus",
    "DeliveryEvent",
    "EventKind",
    "ImportChange",
    "ImportChangeKind",
    "ImportKind",
    "ImportRecord",
    "ImportRun",
    "ListMembership",
    "Message",
    "MessageIdLookup",
    "MessageStatus",
    "RateSlot",
    "Registration",
    "RegistrationStatus",
    "RelayCircuit",
    "ReportKind",
    "SessionRow",
    "StaffRole",
    "StaffSession",
    "StaffUser",
    "Suppression",
    "SuppressionLift",
    "TokenScope",
    "UTCDateTime",
    "Wave",
    "WaveStatus",
    "WebhookEvent",
    "message_id_among",
    "message_status_is",
]
