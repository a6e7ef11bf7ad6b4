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
The template context is :mod:`mailer.compose.context`; the environment, its filters and error reporting
:mod:`mailer.compose.environment`; the shared wording :mod:`mailer.compose.wording`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from babel import UnknownLocaleError

from mailer.compose.context import send_lead, template_context
from mailer.compose.environment import make_environment, run_template
from mailer.compose.inlining import RTL_PREFIX
from mailer.compose.localise import language_family, locale_for, normalise_tag, with_country
from mailer.compose.personalise import (
    PERSONAL,
    Filled,
    Layout,
    Piece,
    fill,
    fill_layout,
    fits,
    layout,
    marked,
    pieces,
    presence,
    substitutable,
)
from mailer.compose.wording import Wording, wording_of
from mailer.config import Series, Session, Settings, Step, StepKind
from mailer.errors import NotFoundError, RenderError
from mailer.store.recipient import Recipient
from mailer.timeline.plan import step_time
from mailer.zones import UnknownZoneError, resolve_zone

log = logging.getLogger(__name__)

PARTS = ("subject.txt", "txt", "html")
_PART_FILE = re.compile(r"^(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\.(?P<part>subject\.txt|txt|html)$")


@dataclass(frozen=True)
class Rendered:
    """One rendered message body. ``language`` is the language used; ``requested_language`` the recipient's tag.

    ``kind`` is the step kind it was rendered for (``None`` when built by hand); :mod:`mailer.compose.wire` uses it to
    decide on ``Auto-Submitted``. ``title`` is the session's name in ``language`` (a calendar entry's summary).
    """

    subject: str
    text: str
    html: str
    language: str
    requested_language: str
    kind: StepKind | None = None
    title: str = ""
    #: The text and HTML parts as filled in from their render group's :class:`~mailer.compose.personalise.Layout`
    #: (None when rendered alone): :mod:`mailer.compose.wire` then encodes only their personal lines, when
    #: ``text`` and ``html`` are still these parts' texts.
    filled: tuple[Filled, Filled] | None = field(default=None, compare=False, repr=False)

    @property
    def fell_back(self) -> bool:
        """True when the recipient's language had no complete template and another one was used."""
        return self.language != self.requested_language


@dataclass(frozen=True)
class _Group:
    """What recipients of one (step, session, language, zone, extra) share: subject, text and HTML split at
    the personal values' markers, and the session's title. ``kept`` holds the series, session and step its key
    names by identity (hashing them field by field would cost more than filling the parts in), so their ids
    are not reused while it is kept."""

    parts: tuple[tuple[Piece, ...], ...]
    title: str
    kept: object
    layouts: tuple[Layout, ...] = ()  # text and HTML, see mailer.compose.personalise.layout


_NONE = _Group((), "", None)  # the group renders per message (a marker did not come out whole)
_GROUPS = 4096  # groups kept; all are dropped when full


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
        self.wording: dict[str, Wording] = {}
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

    def _wording(self, folder: str, language: str) -> Wording:
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
        return wording_of(module, name)

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
        sent_at: datetime | None = None,
    ) -> Rendered:
        """Render ``step``'s template for ``recipient`` in the first language of the chain that has all parts,
        as sent at ``sent_at`` (the relative words "tomorrow", "in 13 hours" follow it; default: the step's time).

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
        group = self._group(step, session, recipient, series, used, unsubscribe_url, extra, personal, sent_at)
        if group is None:  # rendered for this recipient alone
            context = template_context(
                self.settings,
                self.wording[used],
                step,
                session,
                recipient,
                series,
                used,
                unsubscribe_url,
                extra,
                sent_at=sent_at,
            )
            subject, text, html = (self._run(template, context) for template in languages[used])
            title = context["session_title"]
            filled = None
        else:
            subject = fill(group.parts[0], personal)
            filled = (fill_layout(group.layouts[0], personal), fill_layout(group.layouts[1], personal))
            text, html = filled[0].text, filled[1].text
            title = group.title
        subject = " ".join(subject.split())
        if not subject:
            raise RenderError(f"{languages[used][0].name}: the subject rendered empty")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            filled = None
        if "\r" in html:
            html = html.replace("\r\n", "\n")
            filled = None
        return Rendered(subject, text, html, used, requested, step.kind, title, filled)

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
        sent_at: datetime | None,
    ) -> _Group | None:
        """The parts shared by every recipient of (step, session, language, zone, ``extra``), with markers for
        the personal values (:mod:`mailer.compose.personalise`); None when this template set must render per message."""
        if not self.substitute or not self._substitutable(step.template, language) or not fits(personal):
            return None
        shared = tuple(sorted((name, value) for name, value in (extra or {}).items() if name not in PERSONAL))
        try:
            zone = resolve_zone(recipient.time_zone)
        except UnknownZoneError:
            return None  # rendered alone, where the error names the recipient
        moment = step_time(session, step) if sent_at is None else sent_at
        lead = send_lead(session, zone, moment, language)
        key = (
            id(series),
            id(session),
            id(step),
            language,
            recipient.time_zone,
            lead,
            shared,
            presence(personal),
        )
        try:
            group = self._groups.get(key)
        except TypeError:  # an unhashable value in extra
            return None
        if group is None:
            context = template_context(
                self.settings,
                self.wording[language],
                step,
                session,
                recipient,
                series,
                language,
                unsubscribe_url,
                extra,
                sent_at=sent_at,
            )
            context.update(marked(personal), _marked=True)
            parts = tuple(
                pieces(self._run(template, context)) for template in self.templates[step.template][language]
            )
            if len(self._groups) >= _GROUPS:
                self._groups.clear()
            whole = tuple(part for part in parts if part is not None)
            group = self._groups[key] = (
                _Group(
                    whole,
                    context["session_title"],
                    (series, session, step),
                    (layout(whole[1]), layout(whole[2])) if len(whole) == 3 else (),
                )
                if len(whole) == len(parts)
                else _NONE
            )
        return None if group is _NONE else group

    def _substitutable(self, folder: str, language: str) -> bool:
        known = self._plain.get((folder, language))
        if known is None:
            names = [template.name or "" for template in self.templates[folder][language]]
            known = self._plain[(folder, language)] = substitutable(self.env, names)
        return known

    def _run(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        return run_template(template, context, self.templates_dir)


__all__ = ["PARTS", "Rendered", "Renderer"]
