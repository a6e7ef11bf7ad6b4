"""Rendering: (template, language, recipient, session, step) -> subject, text and HTML. Pure (DESIGN invariant 4).

One Jinja2 environment per :class:`Renderer`, built once: every template under ``settings.templates_dir`` is
parsed at construction, so a syntax error fails at start with the file name and line.

Template layout (``templates/email/``)::

    <template>/<lang>.subject.txt   one line after whitespace is collapsed; never HTML-escaped
    <template>/<lang>.txt           text/plain part; never HTML-escaped
    <template>/<lang>.html          text/html part; autoescaped
    _layout.txt, _layout.html       shared layouts the parts extend (block ``body``)
    _styles.css, _styles.rtl.css    the stylesheet, inlined into the HTML templates when they are loaded
                                    (the second one only for right-to-left languages): see mailer.compose.inlining
    _common/<lang>.j2               the language's shared wording (plain strings, no macros): the context's ``t``

A language counts for a template when all three parts exist, or, for a regional variant (``pt-PT``), when
the parts it lacks are found along its CLDR family (``pt-PT`` -> ``pt``): a variant holds only the parts
that differ. ``_common/<lang>.j2`` (or a family parent's) must then exist and set series_name, region_names,
organiser_names, session_title_format, session_ref_format and session_short_format (checked at start).
Adding a language takes templates and a line of config (``languages.offered``), no code: direction comes
from Babel's locale data, dates and lists from CLDR.

Language chain for a recipient (:meth:`Renderer.language_chain`): the recipient's tag made regional with
their country when it names no region ("pt" in Mozambique -> "pt-MZ"), its CLDR family ("pt-MZ" ->
"pt-PT" -> "pt"), then the region's ``fallback`` list from config/mailer.toml, then the default language.
Shared wording holds no macros on purpose: a macro from a non-HTML file called from an HTML part would
return its data unescaped, so everything built from data is computed here and escaped by the HTML part.

Template context (a fixed set; ``extra`` adds keys, see :data:`OVERRIDABLE`):

    recipient            Recipient          the person (name, title, institution, email, ...)
    greeting_name        str                title and name on one line, or "" (the template chooses a fallback)
    series, session, step                   config objects (Series, Session, Step)
    occurrence           int                1 for the first step of its kind in the series, 2 for the next, ...
    lead                 str                "week" | "day" | "hour" for 7 days / 1 day / 1 hour before, else ""
    lead_text            str                the lead time in words ("in 3 days"); "" unless before the start
    language             str                the language used (BCP 47)
    direction, align     str                "ltr" | "rtl" and the matching "left" | "right"
    t                    module             _common/<lang>.j2 (t.series_name, t.unsubscribe, ...)
    region_name          str                the session's region in the language (t.region_names, else config)
    session_title        str                the session's name for subjects and headings, in the language
    session_ref          str                the same for running text ("au webinaire parlementaire ... (Caraïbes)")
    session_short        str                a short name for subjects ("Budapest Convention webinar (Caribbean)")
    organisers_text      str                the organisers as a list in words, in the language
    start_local          str                date, time and zone label in the recipient's zone and language
    start_local_date     str                full date there ("Wednesday, July 14, 2021")
    start_local_day      str                day and month there, for subjects ("July 14", "14 juillet")
    start_local_time     str                short time there ("2:00 AM")
    end_local_time       str                short end time there
    local_zone           str                the recipient's zone label ("Apia, GMT+13:00")
    start_session_zone   str                date, time and zone label in the session's own zone
    session_zone         str                the session's zone label ("GMT-03:00")
    same_zone            bool               both zones have the same UTC offset at the start
    duration             str                "3 hours", "1 hour and 30 minutes"
    session_languages    str                the session's languages in words ("English, French, and Arabic")
    agenda, organisers   tuple[str, ...]    from the session and the series (as configured)
    join_url             str                the session's join URL
    registration_url     str                where to register (the join URL unless ``extra`` gives one)
    materials_url        str | None         the series' materials page; None when not configured
    unsubscribe_url      str                the URL or mailto: URI the caller passes in

Filters for aware datetimes given in ``extra`` (a notice's ``previous_start``): ``local_datetime``,
``local_date``, ``local_time`` (recipient's zone) and ``session_datetime`` (session's zone); ``wrap`` wraps
text at 72 columns; ``isolate`` (names, dates) and ``ltr`` (URLs, addresses) wrap text-part values in Unicode
isolates so they keep their order in right-to-left text (HTML parts use ``<bdi>`` and ``dir="ltr"``).
The global ``fail(message)`` stops rendering with a RenderError. A notice expects
``change`` ("rescheduled" | "cancelled") and, when rescheduled, ``previous_start``. Invitations use the
optional ``rsvp_yes_url`` (then the registration link) and ``rsvp_no_url`` (a one-click "cannot attend") when
given (``{% if rsvp_no_url is defined %}``).

Errors: an undefined variable, a printed ``None``, ``fail()`` or a syntax error raises
:class:`mailer.errors.RenderError` naming the template file and line (and the variable); nothing renders
blank or as "None".
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from babel import UnknownLocaleError

from mailer.compose.inlining import RTL_PREFIX, InliningLoader
from mailer.compose.localise import (
    DateWords,
    is_rtl,
    isolate,
    isolate_ltr,
    language_family,
    language_names,
    lead_words,
    locale_for,
    normalise_tag,
    session_times,
    with_country,
    word_list,
)
from mailer.compose.personalise import (
    PERSONAL,
    Piece,
    fill,
    fits,
    marked,
    pieces,
    presence,
    substitutable,
    wrap_filter,
)
from mailer.config import Series, Session, Settings, Step, StepKind
from mailer.errors import NotFoundError, RenderError
from mailer.store.recipient import Recipient
from mailer.zones import UnknownZoneError, resolve_zone

log = logging.getLogger(__name__)

PARTS = ("subject.txt", "txt", "html")
_PART_FILE = re.compile(r"^(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\.(?P<part>subject\.txt|txt|html)$")
_UNDEFINED = re.compile(r"^'(?P<name>[^']+)' is undefined$|has no attribute '(?P<attr>[^']+)'")

#: Context keys ``extra`` may replace; any other clash with a fixed variable raises ValueError.
OVERRIDABLE = frozenset({"join_url", "registration_url", "materials_url"})

#: The documented template context (see the module docstring): what every template may use.
CONTEXT_VARIABLES = frozenset(
    {
        "recipient",
        "greeting_name",
        "series",
        "session",
        "step",
        "occurrence",
        "lead",
        "lead_text",
        "language",
        "direction",
        "align",
        "t",
        "region_name",
        "session_title",
        "session_ref",
        "session_short",
        "organisers_text",
        "start_local",
        "start_local_date",
        "start_local_day",
        "start_local_time",
        "end_local_time",
        "local_zone",
        "start_session_zone",
        "session_zone",
        "same_zone",
        "duration",
        "session_languages",
        "agenda",
        "organisers",
        "join_url",
        "registration_url",
        "materials_url",
        "unsubscribe_url",
    }
)

#: Variables the service passes in ``extra``, by step kind (guard the optional ones with ``is defined``).
EXTRA_VARIABLES: dict[StepKind, frozenset[str]] = {
    kind: frozenset(
        {"rsvp_yes_url", "rsvp_no_url"} | ({"change", "previous_start"} if kind is StepKind.NOTICE else set())
    )
    for kind in StepKind
}

#: What ``_common/<lang>.j2`` must set.
WORDING_NAMES = (
    "session_title_format",
    "session_ref_format",
    "session_short_format",
    "region_names",
    "organiser_names",
    "series_name",
)


@dataclass(frozen=True)
class Rendered:
    """One rendered message body. ``language`` is the language used; ``requested_language`` the recipient's tag.

    ``kind`` is the step kind it was rendered for (``None`` when built by hand); :mod:`mailer.compose.mime` uses it to
    decide on ``Auto-Submitted``. ``title`` is the session's name in ``language`` (a calendar entry's summary).
    """

    subject: str
    text: str
    html: str
    language: str
    requested_language: str
    kind: StepKind | None = None
    title: str = ""

    @property
    def fell_back(self) -> bool:
        """True when the recipient's language had no complete template and another one was used."""
        return self.language != self.requested_language


@dataclass(frozen=True)
class _Group:
    """What recipients of one (step, session, language, zone, extra) share: subject, text and HTML split at
    the personal values' markers, and the session's title. ``series`` keeps the series its key names by id."""

    parts: tuple[tuple[Piece, ...], ...]
    title: str
    series: object


_NONE = _Group((), "", None)  # the group renders per message (a marker did not come out whole)
_GROUPS = 4096  # groups kept; all are dropped when full


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


@jinja2.pass_context
def _local_datetime(context: jinja2.runtime.Context, value: datetime) -> str:
    return _words(context).local(value)


@jinja2.pass_context
def _local_date(context: jinja2.runtime.Context, value: datetime) -> str:
    return _words(context).local_date(value)


@jinja2.pass_context
def _local_time(context: jinja2.runtime.Context, value: datetime) -> str:
    return _words(context).local_time(value)


@jinja2.pass_context
def _session_datetime(context: jinja2.runtime.Context, value: datetime) -> str:
    return _words(context).session(value)


def _lead(step: Step) -> tuple[str, timedelta | None]:
    """("week" | "day" | "hour" | "", time before the start or None when the step is not before it)."""
    offset = step.offset
    if offset.calendar_days < 0:
        before = timedelta(days=-offset.calendar_days)
    elif offset.exact < timedelta(0):
        before = -offset.exact
    else:
        return "", None
    named = {timedelta(days=7): "week", timedelta(days=1): "day", timedelta(hours=1): "hour"}
    if offset.calendar_days == 0 and before >= timedelta(days=1):
        return "", before  # exact hours worth a day or more: say it in words
    return named.get(before, ""), before


@dataclass(frozen=True)
class _Wording:
    """A language's ``_common/<lang>.j2``: the module (the context's ``t``) and what the renderer reads from it."""

    module: Any
    title_format: str
    ref_format: str
    short_format: str
    region_names: dict[str, str]
    organiser_names: dict[str, str]


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
        local_datetime=_local_datetime,
        local_date=_local_date,
        local_time=_local_time,
        session_datetime=_session_datetime,
        wrap=wrap_filter,
        isolate=isolate,
        ltr=isolate_ltr,
    )
    env.globals["fail"] = _fail
    return env


class Renderer:
    """Renders step templates. Build once per process; :meth:`render` is pure and thread-safe.

    Recipients of one step, session, language and time zone share one render, filled in with each one's
    greeting name and links (:mod:`mailer.compose.personalise`), when the templates allow it; ``substitute=False``
    renders every message on its own (the same output, several times slower).

    Raises :class:`RenderError` at construction for a syntax error, a misnamed part file, a language Babel does
    not know, or a missing or incomplete ``_common/<lang>.j2``.
    """

    def __init__(self, settings: Settings, *, substitute: bool = True) -> None:
        self.settings = settings
        self.substitute = (
            substitute  # False: every message renders on its own (mailer.compose.personalise not used)
        )
        self.templates_dir = Path(settings.templates_dir)
        self.env = make_environment(self.templates_dir)
        # template folder -> language -> (subject, text, html)
        self.templates: dict[str, dict[str, tuple[jinja2.Template, ...]]] = {}
        # language -> its _common/<lang>.j2
        self.wording: dict[str, _Wording] = {}
        self._plain: dict[
            tuple[str, str], bool
        ] = {}  # (folder, language) -> mailer.compose.personalise.substitutable
        self._groups: dict[tuple[object, ...], _Group] = {}  # see _group
        self._chains: dict[tuple[str, str, str], list[str]] = {}  # see language_chain
        found: dict[str, dict[str, dict[str, jinja2.Template]]] = {}
        for name in self.env.list_templates():
            if name.endswith(".css"):
                continue  # the stylesheets: inlined by the loader
            template = self._load(name)
            folder, _, filename = name.rpartition("/")
            if not folder or folder.startswith("_") or "/" in folder:
                if name.endswith(".html"):
                    self._load(RTL_PREFIX + name)  # its right-to-left inlining, now rather than at first use
                continue  # layouts and shared partials
            match = _PART_FILE.match(filename)
            if not match:
                raise RenderError(
                    f"{name}: not a template part name (expected <lang>.subject.txt, .txt or .html)"
                )
            language = normalise_tag(match["lang"])
            found.setdefault(folder, {}).setdefault(language, {})[match["part"]] = template
        self.part_sources: dict[str, dict[str, dict[str, str]]] = {}  # folder -> language -> part -> language
        for folder, languages in found.items():
            self.templates[folder] = {}
            self.part_sources[folder] = {}
            for language in languages:
                sources = {
                    part: next(
                        (tag for tag in language_family(language) if part in languages.get(tag, {})), ""
                    )
                    for part in PARTS
                }
                if not all(sources.values()):
                    continue  # incomplete even with its family's parts: never chosen, the chain moves on
                try:
                    locale_for(language)
                except (ValueError, UnknownLocaleError):
                    raise RenderError(
                        f"{folder}/{language}.*: {language!r} is no locale Babel knows"
                    ) from None
                if language not in self.wording:
                    self.wording[language] = self._wording(folder, language)
                self.templates[folder][language] = tuple(languages[sources[p]][p] for p in PARTS)
                self.part_sources[folder][language] = sources

    def _load(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"{exc.filename or name} line {exc.lineno}: {exc.message}") from None

    def _wording(self, folder: str, language: str) -> _Wording:
        """Load and check ``_common/<lang>.j2`` (a regional variant without one uses its family's, "pt-PT" ->
        "pt"); RenderError naming the file when it is missing or incomplete."""
        candidates = [f"_common/{tag}.j2" for tag in language_family(language)]
        name = next((c for c in candidates if (self.templates_dir / c).is_file()), "")
        if not name:
            raise RenderError(f"{folder}/{language}.*: missing shared wording {candidates[0]}")
        try:
            module = self._load(name).module
        except jinja2.TemplateError as exc:
            raise RenderError(f"{name}: {exc}") from None
        missing = [key for key in WORDING_NAMES if not hasattr(module, key)]
        if missing:
            raise RenderError(f"{name}: {missing[0]} is not set")
        wording = _Wording(
            module,
            str(module.session_title_format),
            str(module.session_ref_format),
            str(module.session_short_format),
            dict(module.region_names),
            dict(module.organiser_names),
        )
        for pattern in (wording.title_format, wording.ref_format, wording.short_format):
            try:
                pattern.format(title="", region="")
            except (KeyError, IndexError, ValueError) as exc:
                raise RenderError(
                    f"{name}: a *_format may use only {{title}} and {{region}} ({exc!r})"
                ) from None
        return wording

    def language_chain(self, language: str, region: str, country: str = "") -> list[str]:
        """Languages to try, best first (see the module docstring).

        The tag made regional with ``country`` when it names no region, its CLDR family, the region's
        ``fallback`` list, then the default language: "pt" in Mozambique (Africa) gives pt-MZ, pt-PT, pt, fr,
        en; "pt-BR" in Latin America gives pt-BR, pt, es, en. ``region`` "" skips the region's list; an
        unknown region raises :class:`NotFoundError`.
        """
        key = (language, region, country)
        chain = self._chains.get(key)
        if chain is None:
            if len(self._chains) >= _GROUPS:
                self._chains.clear()
            chain = self._chains[key] = self._language_chain(language, region, country)
        return list(chain)

    def _language_chain(self, language: str, region: str, country: str) -> list[str]:
        candidates = list(language_family(with_country(language, country))) if language.strip() else []
        if region:
            try:
                candidates.extend(self.settings.region(region).fallback)
            except KeyError as exc:
                raise NotFoundError(str(exc.args[0])) from None
        candidates.append(self.settings.default_language)
        chain: list[str] = []
        for candidate in candidates:
            tag = normalise_tag(candidate)
            if tag and tag not in chain:
                chain.append(tag)
        return chain

    def render(
        self,
        step: Step,
        session: Session,
        recipient: Recipient,
        *,
        series: Series,
        unsubscribe_url: str,
        extra: Mapping[str, object] | None = None,
    ) -> Rendered:
        """Render ``step``'s template for ``recipient`` in the first language of the chain that has all parts.

        The chain uses ``recipient.region`` or else the session's region. A fallback is logged (INFO) with the
        requested and the used language. Raises :class:`RenderError` (no template folder, no language in the
        chain, undefined variable, ``None`` printed, unknown recipient zone), :class:`NotFoundError` for an
        unknown ``recipient.region`` and ValueError when ``extra`` shadows a fixed context variable.
        """
        languages = self.templates.get(step.template)
        if not languages:
            raise RenderError(
                f"no templates for step {step.name!r}: folder {step.template!r} is empty or missing"
            )
        requested = normalise_tag(recipient.language)
        chain = self.language_chain(recipient.language, recipient.region or session.region, recipient.country)
        used = next((tag for tag in chain if tag in languages), None)
        if used is None:
            raise RenderError(f"{step.template}: no complete template in any of {', '.join(chain)}")
        if used != requested:
            log.info(
                "language fallback for %s (%s): requested %r, used %r",
                recipient.email,
                step.template,
                requested,
                used,
            )
        personal: dict[str, object] = {
            "greeting_name": recipient.display_name,
            "unsubscribe_url": unsubscribe_url,
        }
        personal.update((name, value) for name, value in (extra or {}).items() if name in PERSONAL)
        group = self._group(step, session, recipient, series, used, unsubscribe_url, extra, personal)
        if group is None:  # rendered for this recipient alone
            context = self._context(step, session, recipient, series, used, unsubscribe_url, extra)
            subject, text, html = (self._run(template, context) for template in languages[used])
            title = context["session_title"]
        else:
            subject, text, html = (fill(part, personal) for part in group.parts)
            title = group.title
        subject = " ".join(subject.split())
        if not subject:
            raise RenderError(f"{languages[used][0].name}: the subject rendered empty")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        if "\r" in html:
            html = html.replace("\r\n", "\n")
        return Rendered(subject, text, html, used, requested, step.kind, title)

    def _group(
        self,
        step: Step,
        session: Session,
        recipient: Recipient,
        series: Series,
        language: str,
        unsubscribe_url: str,
        extra: Mapping[str, object] | None,
        personal: Mapping[str, object],
    ) -> _Group | None:
        """The parts shared by every recipient of (step, session, language, zone, ``extra``), with markers for
        the personal values (:mod:`mailer.compose.personalise`); None when this template set must render per message."""
        if not self.substitute or not self._substitutable(step.template, language) or not fits(personal):
            return None
        shared = tuple(sorted((name, value) for name, value in (extra or {}).items() if name not in PERSONAL))
        key = (id(series), session, step, language, recipient.time_zone, shared, presence(personal))
        try:
            group = self._groups.get(key)
        except TypeError:  # an unhashable value in extra
            return None
        if group is None:
            context = self._context(step, session, recipient, series, language, unsubscribe_url, extra)
            context.update(marked(personal), _marked=True)
            parts = tuple(
                pieces(self._run(template, context)) for template in self.templates[step.template][language]
            )
            if len(self._groups) >= _GROUPS:
                self._groups.clear()
            group = self._groups[key] = (
                _Group(parts, context["session_title"], series) if None not in parts else _NONE
            )
        return None if group is _NONE else group

    def _substitutable(self, folder: str, language: str) -> bool:
        known = self._plain.get((folder, language))
        if known is None:
            names = [template.name or "" for template in self.templates[folder][language]]
            known = self._plain[(folder, language)] = substitutable(self.env, names)
        return known

    def _context(
        self,
        step: Step,
        session: Session,
        recipient: Recipient,
        series: Series,
        language: str,
        unsubscribe_url: str,
        extra: Mapping[str, object] | None,
    ) -> dict[str, Any]:
        try:
            times = session_times(
                session.start, session.end, recipient.time_zone, session.zone_name, language
            )
            local_zone = resolve_zone(recipient.time_zone)
        except UnknownZoneError as exc:
            raise RenderError(f"recipient {recipient.email}: {exc}") from None
        locale = locale_for(language)
        wording = self.wording[language]
        region = self.settings.regions.get(session.region)
        region_name = wording.region_names.get(session.region, region.name if region else session.region)
        lead, before = _lead(step)
        rtl = is_rtl(locale)
        same_kind = [s.name for s in series.steps if s.kind is step.kind]
        context: dict[str, Any] = {
            "recipient": recipient,
            "greeting_name": recipient.display_name,
            "series": series,
            "session": session,
            "step": step,
            "occurrence": same_kind.index(step.name) + 1 if step.name in same_kind else 1,
            "lead": lead,
            "lead_text": lead_words(before, language) if before else "",
            "language": language,
            "t": wording.module,
            "direction": "rtl" if rtl else "ltr",
            "align": "right" if rtl else "left",
            **times,
            "session_languages": language_names(session.languages, language),
            "region_name": region_name,
            "session_title": wording.title_format.format(title=session.title, region=region_name),
            "session_ref": wording.ref_format.format(title=session.title, region=region_name),
            "session_short": wording.short_format.format(title=session.title, region=region_name),
            "organisers_text": word_list(
                tuple(wording.organiser_names.get(o, o) for o in series.organisers), language
            ),
            "agenda": session.agenda,
            "organisers": series.organisers,
            "join_url": session.join_url,
            "registration_url": session.join_url,
            "materials_url": series.materials_url or None,
            "unsubscribe_url": unsubscribe_url,
            "_dates": DateWords(locale, local_zone, session.zone),
        }
        for key, value in (extra or {}).items():
            if key in context and key not in OVERRIDABLE:
                raise ValueError(f"extra variable {key!r} would replace a fixed context variable")
            context[key] = value
        return context

    def _run(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        try:
            return template.render(context)
        except jinja2.TemplateRuntimeError as exc:  # also UndefinedError and _PrintedNone
            name, line = self._where(exc.__traceback__, template)
            match = _UNDEFINED.search(str(exc))
            if isinstance(exc, jinja2.UndefinedError) and match and not isinstance(exc, _PrintedNone):
                raise UndefinedVariableError(name, line, match["name"] or match["attr"], str(exc)) from None
            raise RenderError(f"{name} line {line}: {exc}") from None

    def _where(self, tb: TracebackType | None, template: jinja2.Template) -> tuple[str, int]:
        """The innermost template frame of a Jinja traceback: (name relative to the templates folder, line)."""
        root = os.fspath(self.templates_dir) + os.sep
        name, line = template.name or "?", 0
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(root):
                name, line = Path(filename[len(root) :]).as_posix(), tb.tb_lineno
            tb = tb.tb_next
        return name, line


__all__ = [
    "CONTEXT_VARIABLES",
    "EXTRA_VARIABLES",
    "OVERRIDABLE",
    "PARTS",
    "WORDING_NAMES",
    "Rendered",
    "Renderer",
    "UndefinedVariableError",
    "make_environment",
]
