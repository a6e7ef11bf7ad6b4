"""Numbers the command line takes, bounded where they are parsed: a value no store can hold is refused (ids,
ports) or capped (row limits) by click, with its usual one-line "Invalid value" error, never a traceback from
the store. Imports only click, like :mod:`mailer.cli`."""

from __future__ import annotations

from typing import Any

import click

MAX_ROW_ID = 2**31 - 1  # an SQL ``integer`` primary key (mailer.store.queries.log.MAX_ROW_ID)

ROW_ID = click.IntRange(min=1, max=MAX_ROW_ID)
"""A row id (wave, import): 1 to 2^31-1, else "Invalid value for 'WAVE_ID': ... is not in the range"."""

PORT = click.IntRange(min=0, max=65535)
"""A TCP port: 0 (any free one) to 65535."""


class RowLimit(click.IntRange):
    """How many rows to show: at least 1; more than any table can hold means all of them (capped at
    :data:`MAX_ROW_ID`, which every store's LIMIT takes)."""

    def __init__(self) -> None:
        super().__init__(min=1)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, refused below 1 and capped at :data:`MAX_ROW_ID`."""
        number = super().convert(value, param, ctx)
        return min(number, MAX_ROW_ID)


LIMIT = RowLimit()

__all__ = ["LIMIT", "MAX_ROW_ID", "PORT", "ROW_ID", "RowLimit"]
