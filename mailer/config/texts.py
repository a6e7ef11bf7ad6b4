"""Per-language session texts: ``[sessions.texts.<language>]`` tables in ``series.toml``.

A session's top-level ``title``, ``agenda``, ``description`` and ``materials_text`` are its texts in the
series' base language (English); a table per language gives the same keys in that language, any key left
out taking the base one. A reader gets the table of the first language of their language's chain
(``pt-MZ`` -> ``pt-PT`` -> ``pt``, the same chain as templates) that has one, else the base texts;
``mailer templates check`` shows which readers fall back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from mailer.config.reader import TableReader

#: The language of a session's top-level texts.
BASE_LANGUAGE = "en"


@dataclass(frozen=True)
class SessionTexts:
    """What a session says in one language: its ``title`` (put into the templates' title formats), the
    ``agenda`` items, a ``description`` paragraph ("" when none) and the ``materials_text`` of the link to
    the series' materials ("" when the templates' own wording is used)."""

    title: str
    agenda: tuple[str, ...]
    description: str = ""
    materials_text: str = ""


def read_texts(reader: TableReader, base: SessionTexts) -> tuple[tuple[str, SessionTexts], ...]:
    """The ``texts`` table of a session: (language tag, texts) pairs, missing keys taken from ``base``.
    Raises ConfigError for a value of the wrong type, a control character in a title, or an unknown key."""
    table = reader.table("texts")
    found: list[tuple[str, SessionTexts]] = []
    for language in list(table.data):
        sub = table.table(language)
        found.append(
            (
                language,
                replace(
                    base,
                    title=sub.header_text("title", base.title),
                    agenda=sub.strings("agenda", base.agenda),
                    description=sub.get("description", str, base.description),
                    materials_text=sub.get("materials_text", str, base.materials_text),
                ),
            )
        )
    return tuple(found)


def texts_in(
    texts: Iterable[tuple[str, SessionTexts]], base: SessionTexts, chain: Iterable[str]
) -> tuple[SessionTexts, str]:
    """The texts for a reader whose language chain is ``chain`` (nearest first) and the language they are
    in: the first tag of ``chain`` with a table, else ``base`` (:data:`BASE_LANGUAGE`)."""
    by_language = dict(texts)
    for tag in chain:
        if tag in by_language:
            return by_language[tag], tag
    return base, BASE_LANGUAGE
