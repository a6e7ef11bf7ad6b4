"""Template checks and sample messages: what ``mailer templates check`` and ``render-all`` do, and what the
service runs before it starts (:func:`require_templates`).

:func:`check_templates` finds, without sending anything:

- errors: a template that does not parse (file and line), HTML whose Jinja tags cannot survive CSS inlining,
  a variable the renderer does not provide (``jinja2.meta.find_undeclared_variables`` against
  :data:`mailer.compose.context.CONTEXT_VARIABLES` and the step kind's :data:`~mailer.compose.context.EXTRA_VARIABLES`), a step
  template some offered language cannot be rendered in at all, a sample that fails to render (an attribute
  that does not exist, ``fail()``);
- warnings: an offered language that has no part of its own or of its family (``pt-PT`` -> ``pt``) and is
  served through a region's fallback instead (its readers get another language), and subject lines longer
  than :data:`SUBJECT_WARN` characters, rendered for every session with a sample contact.

:func:`samples` renders every step (and both notices) in every offered language for a sample contact;
:func:`write_samples` writes them as ``.eml`` (the message the service would send:
:class:`mailer.compose.outgoing.Outgoing`, calendar included) and ``.html`` files to look at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import jinja2
from jinja2 import meta

from mailer.compose.context import CONTEXT_VARIABLES, EXTRA_VARIABLES
from mailer.compose.environment import make_environment
from mailer.compose.localise import language_family
from mailer.compose.outgoing import Outgoing, sample_links
from mailer.compose.render import PARTS, Rendered, Renderer
from mailer.config import Settings, Step, StepKind
from mailer.errors import RenderError
from mailer.message_ids import make_message_id
from mailer.store.recipient import Recipient
from mailer.store.relationships import Relationship
from mailer.timeline.plan import notice_step

RELATIONSHIPS = tuple(relationship.value for relationship in Relationship)
SUBJECT_WARN = 78  # characters: RFC 5322's line length, and about what a phone shows of a subject
_TEMPLATE_FILE = re.compile(r"\.(?:html|txt|j2)$")

#: Sample contacts per language for checks and previews (other languages get a neutral one).
SAMPLE_NAMES = {
    "en": ("Senator", "Nobantu Mcusi"),
    "fr": ("Hon.", "Aïcha Touré"),
    "es": ("Dip.", "Lucía Ferreira"),
    "ar": ("", "واصف الحويطات"),
    "pt": ("Dep.", "Ana Souza"),
    "pt-PT": ("Dr.", "Mariana Leal"),
}


@dataclass(frozen=True)
class Finding:
    """One problem: ``level`` "error" or "warning", the template it is about ("" for none) and what is wrong."""

    level: str
    template: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.template + ': ' if self.template else ''}{self.message}"


@dataclass
class CheckReport:
    """What :func:`check_templates` found, errors first: "error", "warning" and "note" findings (a note
    says what readers get without it being a fault, e.g. session texts falling back to another language)."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def add(self, level: str, template: str, message: str) -> None:
        finding = Finding(level, template, message)
        if finding not in self.findings:
            self.findings.append(finding)


class TemplateCheckError(RenderError):
    """The templates have errors; ``report`` holds every finding."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        lines = "\n".join(f"  {finding}" for finding in report.errors)
        super().__init__(f"{len(report.errors)} template error(s), fix them before starting:\n{lines}")


def require_templates(settings: Settings, say: Callable[[str], None] = print) -> CheckReport:
    """Run :func:`check_templates` at start-up: warnings are passed to ``say``; errors raise
    :class:`TemplateCheckError` (a RenderError) listing them all."""
    report = check_templates(settings)
    for warning in report.warnings:
        say(str(warning))
    if report.errors:
        raise TemplateCheckError(report)
    return report


def step_folders(settings: Settings) -> dict[str, set[StepKind]]:
    """Template folder -> the step kinds that use it (the configured steps, and notices)."""
    folders: dict[str, set[StepKind]] = {"notice": {StepKind.NOTICE}}
    for step in settings.series.steps:
        folders.setdefault(step.template, set()).add(step.kind)
    return folders


def check_templates(settings: Settings) -> CheckReport:
    """Check every template under ``settings.templates_dir`` (see the module docstring). Never raises for a
    template problem: each is a finding."""
    report = CheckReport()
    root = Path(settings.templates_dir)
    folders = step_folders(settings)
    env = make_environment(root)
    names = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and _TEMPLATE_FILE.search(p.name)
    )
    for name in names:
        source = (root / name).read_text(encoding="utf-8")
        try:
            tree = env.parse(source, name, str(root / name))
        except jinja2.TemplateSyntaxError as exc:
            report.add("error", name, f"line {exc.lineno}: {exc.message}")
            continue
        folder = name.rpartition("/")[0]
        if folder == "_common":
            allowed: set[str] = set()  # loaded as a module, without a context
        elif folder in folders:
            allowed = set(CONTEXT_VARIABLES).union(*(EXTRA_VARIABLES[kind] for kind in folders[folder]))
        else:
            allowed = set(CONTEXT_VARIABLES).union(*EXTRA_VARIABLES.values())
        try:
            unknown = meta.find_undeclared_variables(tree) - allowed - set(env.globals)
        except jinja2.TemplateAssertionError as exc:  # an unknown filter or test
            report.add("error", name, f"line {exc.lineno}: {exc.message}")
            continue
        for variable in sorted(unknown):
            report.add("error", name, f"uses {variable!r}, which the renderer does not provide")
    if report.errors:
        return report  # the renderer would stop at the first of them
    try:
        renderer = Renderer(settings)  # loads (and inlines) every template, shared HTML in both directions
    except (RenderError, jinja2.TemplateError) as exc:  # InliningError included
        report.add("error", "", str(exc))
        return report
    _check_languages(settings, renderer, folders, report)
    _check_session_texts(settings, report)
    if not report.errors:
        _check_renders(settings, renderer, report)
    report.findings.sort(key=lambda f: f.level != "error")
    return report


def _check_session_texts(settings: Settings, report: CheckReport) -> None:
    """A note for each session and offered language whose readers get another language's session texts
    (title, agenda, description): the fallback along the language's chain, else English."""
    for session in settings.series.sessions:
        for language in settings.languages:
            _, used = session.texts_for(language_family(language))
            if used != language:
                report.add(
                    "note",
                    "config/series.toml",
                    f"session {session.id}: no [sessions.texts.{language}] table: readers in {language}"
                    f" get the {used} title and agenda",
                )


def _check_languages(
    settings: Settings, renderer: Renderer, folders: dict[str, set[StepKind]], report: CheckReport
) -> None:
    """Every step folder renders in every offered language: its own parts (or its family's), or else a
    declared fallback (warning), else an error."""
    for folder in sorted(folders):
        available = renderer.templates.get(folder, {})
        if not available:
            report.add("error", f"{folder}/", "no complete template (subject, text and HTML) in any language")
            continue
        for language in settings.languages:
            if language in available:
                continue
            missing = ", ".join(
                f"{language}.{part}"
                for part in PARTS
                if not (settings.templates_dir / folder / f"{language}.{part}").is_file()
            )
            served = {}
            for region in sorted(settings.regions) or [""]:
                chain = renderer.language_chain(language, region)
                served[region] = next((t for t in chain if t in available), None)
            if any(used is None for used in served.values()):
                report.add(
                    "error",
                    f"{folder}/",
                    f"offered language {language!r} has no template ({missing}) and no fallback that has one",
                )
            else:
                got = ", ".join(f"{region or 'all'}: {used}" for region, used in served.items())
                report.add(
                    "warning",
                    f"{folder}/",
                    f"offered language {language!r} lacks {missing}: its readers get a fallback ({got})",
                )


def _check_renders(settings: Settings, renderer: Renderer, report: CheckReport) -> None:
    """Render every step for every session and offered language: failures are errors, long subjects warnings."""
    longest: dict[str, tuple[int, str, str]] = {}
    for sample in samples(settings, renderer, sessions=None, report=report):
        rendered, folder = sample.rendered, sample.step.template
        source = renderer.part_sources[folder][rendered.language]["subject.txt"]  # pt-PT may use pt's
        template = f"{folder}/{source}.subject.txt"
        size = len(rendered.subject)
        if size > SUBJECT_WARN and size > longest.get(template, (0, "", ""))[0]:
            longest[template] = (size, sample.session_id, rendered.subject)
    for template, (size, session_id, subject) in sorted(longest.items()):
        report.add(
            "warning",
            template,
            f"subject of {size} characters (over {SUBJECT_WARN}) for {session_id}: {subject!r}",
        )


@dataclass(frozen=True)
class Sample:
    """One rendered sample: the session, the step (a notice's synthetic step), the contact and the message."""

    session_id: str
    step: Step
    recipient: Recipient
    rendered: Rendered
    extra: dict[str, object]

    @property
    def stem(self) -> str:
        """``<step>.<language>`` for file names; a notice for someone not registered
        ``<step>-<relationship>.<language>``."""
        relationship = self.extra.get("relationship", Relationship.REGISTERED.value)
        if relationship != Relationship.REGISTERED.value:
            return f"{self.step.name}-{relationship}.{self.recipient.language}"
        return f"{self.step.name}.{self.recipient.language}"


def sample_recipient(settings: Settings, language: str, region: str) -> Recipient:
    """A made-up contact speaking ``language`` in ``region``'s default zone."""
    title, name = SAMPLE_NAMES.get(language, ("", "Sample Contact"))
    slug = re.sub(r"[^a-z0-9]+", ".", name.lower()).strip(".") or "sample"
    zone = settings.region(region).default_zone if region else "UTC"
    return Recipient(
        f"{slug if slug.isascii() else 'sample'}@example.org",
        name,
        title,
        "Parliament",
        "",
        language,
        zone,
        region,
    )


def sample_steps(settings: Settings) -> list[tuple[Step, dict[str, object]]]:
    """Every configured step, then the two notices (a reschedule, SEQUENCE 1, and a cancellation, 2) as
    registrants, invitees not registered and people who declined read them, each with the extra variables
    the service would give (a reschedule a week later than first planned)."""
    steps: list[tuple[Step, dict[str, object]]] = [(step, {}) for step in settings.series.steps]
    for step, change in (
        (notice_step("date-changed", 1), "rescheduled"),
        (notice_step("cancelled", 2), "cancelled"),
    ):
        steps.extend(
            (step, {"change": change, "relationship": relationship}) for relationship in RELATIONSHIPS
        )
    return steps


def samples(
    settings: Settings,
    renderer: Renderer,
    *,
    sessions: list[str] | None,
    languages: tuple[str, ...] | None = None,
    report: CheckReport | None = None,
) -> Iterator[Sample]:
    """Render every sample step for ``sessions`` (None: all) in ``languages`` (None: the offered ones).

    A render failure raises :class:`RenderError`, or, with a ``report``, is added to it as an error and the
    sample is skipped.
    """
    links = sample_links(settings)
    wanted = settings.series.sessions if sessions is None else [settings.series.session(s) for s in sessions]
    for session in wanted:
        for step, extra in sample_steps(settings):
            for language in languages or settings.languages:
                recipient = sample_recipient(settings, language, session.region)
                values: dict[str, object] = {
                    "rsvp_yes_url": links["rsvp_yes_url"],
                    "rsvp_no_url": links["rsvp_no_url"],
                    **extra,
                }
                if extra.get("change") == "rescheduled":
                    values["previous_start"] = session.start - timedelta(days=7)
                try:
                    rendered = renderer.render(
                        step,
                        session,
                        recipient,
                        series=settings.series,
                        unsubscribe_url=links["unsubscribe_url"],
                        extra=values,
                    )
                except RenderError as exc:
                    if report is None:
                        raise
                    report.add(
                        "error", f"{step.template}/", f"{step.name} for {session.id} in {language}: {exc}"
                    )
                    continue
                yield Sample(session.id, step, recipient, rendered, values)


def write_samples(
    settings: Settings,
    out: Path,
    *,
    date: datetime,
    sessions: list[str] | None = None,
    languages: tuple[str, ...] | None = None,
    outgoing: Outgoing | None = None,
) -> list[Path]:
    """Write ``<out>/<session>/<step>.<language>.eml`` and ``.html`` for every sample; returns the files.

    The .eml is the message the service would send (``outgoing``, default unsigned: the same header fields,
    calendar parts included, SEQUENCE as in the sample's step name, links to preview pages); the .html its
    HTML part, to open in a browser. Raises RenderError for a template that fails.
    """
    outgoing = outgoing or Outgoing(settings)
    links = sample_links(settings)
    written: list[Path] = []
    for sample in samples(settings, outgoing.renderer, sessions=sessions, languages=languages):
        session = settings.series.session(sample.session_id)
        message = outgoing.build(
            sample.rendered,
            sample.step,
            session,
            sample.recipient,
            message_id=make_message_id(f"sample:{session.id}:{sample.stem}", settings.sender.domain),
            date=date,
            unsubscribe_url=links["unsubscribe_url"],
            sequence=int(sample.step.name.rpartition("-")[2]) if sample.step.kind is StepKind.NOTICE else 0,
        )
        folder = out / session.id
        folder.mkdir(parents=True, exist_ok=True)
        eml, html = folder / f"{sample.stem}.eml", folder / f"{sample.stem}.html"
        eml.write_bytes(message.data)
        html.write_text(sample.rendered.html, encoding="utf-8")
        written += [eml, html]
    return written


__all__ = [
    "SUBJECT_WARN",
    "CheckReport",
    "Finding",
    "Sample",
    "TemplateCheckError",
    "check_templates",
    "require_templates",
    "sample_recipient",
    "sample_steps",
    "samples",
    "step_folders",
    "write_samples",
]
