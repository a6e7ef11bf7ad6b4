"""Webinar campaign mailer: contact lists per region, localised invitations and reminders on session timelines."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
