"""The Jinja2 environment of the e-mail templates, and running a template with errors that name the file.

Filters for aware datetimes given in ``extra`` (a notice's ``previous_start``): ``local_datetime``,
``local_date``, ``local_time`` (recipient's zone) and ``session_datetime`` (session's zone); ``wrap`` wraps
text at 72 columns; ``isolate`` (names, dates) and ``ltr`` (URLs, addresses) wrap text-part values in Unicode
isolates so they keep their order in right-to-left text (HTML parts use ``<bdi>`` and ``dir="ltr"``).
The global ``fail(message)`` stops rendering with a RenderError. A notice expects
``change`` ("rescheduled" | "cancelled") and, when rescheduled, ``previous_start``. Invitations use the
optional ``rsvp_yes_url`` (then the registration link) and ``rsvp_no_url`` (a one-click "cannot attend") when
given (``{% if rsvp_no_url is defined %}``).

Errors: an undefined variable, a printed ``None``, ``fail()`` or a syntax error raises
:class:`mailer.errors.RenderError` naming the template file and line (and the variable): :func:`run_template`.
Nothing renders blank or as "None".
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from markupsafe import Markup

from mailer.compose.inlining import InliningLoader
from mailer.compose.localise import DateWords, isolate, isolate_ltr, keep_offsets_whole
from mailer.compose.personalise import wrap_filter
from mailer.errors import RenderError

_UNDEFINED = re.compile(r"^'(?P<name>[^']+)' is undefined$|has no attribute '(?P<attr>[^']+)'")


class UndefinedVariableError(RenderError):
    """A template used a variable (or attribute) the context does not have.

    Attributes: ``template`` (path under the templates folder), ``line`` (1-based), ``variable``.
    """

    def __init__(self, template: str, line: int, variable: str, detail: str) -> None:
        self.template = template
        self.line = line
        self.variable = variable
        super().__init__(f"{template} line {line}: undefined variable {variable!r} ({detail})")


class _PrintedNone(jinja2.UndefinedError):
    """Raised by ``finalize`` when ``{{ value }}`` would print ``None``."""


def _refuse_none(value: Any) -> Any:
    if value is None:
        raise _PrintedNone("a value printed as None (guard it with {% if %})")
    return value


def _fail(message: str) -> None:
    """Template global ``fail("why")``: stop rendering with a RenderError naming the template and line."""
    raise jinja2.TemplateRuntimeError(message)


def _words(context: jinja2.runtime.Context) -> DateWords:
    words: DateWords = context["_dates"]
    return words


def _date_filter(method: Callable[[DateWords, datetime], str]) -> Callable[..., str]:
    """A template filter applying ``method`` of the render's :class:`DateWords` (``_dates`` in the context)."""

    @jinja2.pass_context
    def apply(context: jinja2.runtime.Context, value: datetime) -> str:
        return method(_words(context), value)

    return apply


def _keep_offsets(html: str) -> Markup:
    """:func:`keep_offsets_whole` for an HTML block: the filtered block is already escaped markup."""
    return Markup(keep_offsets_whole(str(html)))


def make_environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja2 environment of the templates in ``templates_dir``: CSS inlined into HTML at load
    (:class:`mailer.compose.inlining.InliningLoader`), StrictUndefined, autoescape for ``.html`` only, ``None`` never
    printed, the date, wrap and isolate filters and the ``fail`` global."""
    env = jinja2.Environment(
        loader=InliningLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        finalize=_refuse_none,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=-1,
    )
    env.filters.update(
        local_datetime=_date_filter(DateWords.local),
        local_date=_date_filter(DateWords.local_date),
        local_time=_date_filter(DateWords.local_time),
        session_datetime=_date_filter(DateWords.session),
        wrap=wrap_filter,
        isolate=isolate,
        ltr=isolate_ltr,
        keep_offsets=_keep_offsets,
    )
    env.globals["fail"] = _fail
    return env


def run_template(template: jinja2.Template, context: dict[str, Any], templates_dir: Path) -> str:
    """``template`` rendered with ``context``. Raises :class:`UndefinedVariableError` for an undefined variable
    or attribute, :class:`RenderError` for a printed ``None`` or ``fail()``, naming the innermost template file
    under ``templates_dir`` and its line."""
    try:
        return template.render(context)
    except jinja2.TemplateRuntimeError as exc:  # also UndefinedError and _PrintedNone
        name, line = _where(exc.__traceback__, template, templates_dir)
        match = _UNDEFINED.search(str(exc))
        if isinstance(exc, jinja2.UndefinedError) and match and not isinstance(exc, _PrintedNone):
            raise UndefinedVariableError(name, line, match["name"] or match["attr"], str(exc)) from None
        raise RenderError(f"{name} line {line}: {exc}") from None


def _where(tb: TracebackType | None, template: jinja2.Template, templates_dir: Path) -> tuple[str, int]:
    """The innermost template frame of a Jinja traceback: (name relative to the templates folder, line)."""
    root = os.fspath(templates_dir) + os.sep
    name, line = template.name or "?", 0
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(root):
            name, line = Path(filename[len(root) :]).as_posix(), tb.tb_lineno
        tb = tb.tb_next
    return name, line


__all__ = ["UndefinedVariableError", "make_environment", "run_template"]
