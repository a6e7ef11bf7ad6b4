"""Languages and countries as organisers write them, mapped to BCP 47 tags, ISO 3166 codes and IANA zones.

Everything here is a pure function over Babel's CLDR data (no database, no config reads):

- :func:`language_tag`: "French", "Français", "fr", "FR", "العربية", "Inglés", "pt-br" -> "fr", "ar", "en", "pt-BR";
  ``None`` for blank or unknown values. Only languages Babel has locale data for are returned (so dates can be
  formatted in them): "Klingon" is a CLDR display name but has no locale data, hence ``None``.
- :func:`country_code`: "Côte d'Ivoire", "Ivory Coast", "Trinidad & Tobago", "México", "Brasil", "Saint Lucia",
  "NG", "NGA" -> ISO 3166-1 alpha-2 ("CI", "TT", "MX", "BR", "LC", "NG"); ``None`` when unknown.
- :func:`country_zone`: alpha-2 -> IANA zone name: the configured zone for multi-zone countries, else CLDR's zone
  when the country has exactly one; ``None`` otherwise.
- :func:`country_language`: alpha-2 -> the most-spoken official language, preferring the offered languages.

Names are matched after :func:`fold`: Unicode-normalised, case-folded, punctuation as spaces, with and without
accents; countries also read "&" as "and", "St." as "Saint" and ignore the word "the". Reverse maps are built
once (lazily, cached) from the display names of :data:`DISPLAY_LOCALES`, plus a few aliases CLDR lacks; a name is
looked up in the first locale's names alone first, so that the others are loaded only when one is not found there.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Protocol

from babel import Locale, localedata
from babel.core import get_global

from mailer.zones import canonical_zone_name, is_known_zone

#: Locales whose display names of languages and countries are recognised, in priority order
#: (when two locales use one name for different things, the earlier locale wins).
DISPLAY_LOCALES: tuple[str, ...] = ("en", "fr", "es", "pt", "ar", "de", "it", "nl", "ru", "zh", "ja")

#: Language names CLDR does not list as display names (folded form -> BCP 47 tag).
_LANGUAGE_ALIASES: dict[str, str] = {
    "castellano": "es",
    "farsi": "fa",
    "mandarin": "zh",
    "portugues do brasil": "pt-BR",
    "portugues brasileiro": "pt-BR",
    "brazilian": "pt-BR",
}

#: Country names CLDR's standard display names lack (written as people write them -> alpha-2).
_COUNTRY_ALIASES: dict[str, str] = {
    "Ivory Coast": "CI",
    "DR Congo": "CD",
    "DRC": "CD",
    "Democratic Republic of the Congo": "CD",
    "Congo DR": "CD",
    "Republic of the Congo": "CG",
    "Congo Republic": "CG",
    "East Timor": "TL",
    "Swaziland": "SZ",
    "Burma": "MM",
    "Turkey": "TR",
    "Czech Republic": "CZ",
    "Macedonia": "MK",
    "Great Britain": "GB",
    "England": "GB",
    "Scotland": "GB",
    "Wales": "GB",
    "USA": "US",
    "United States of America": "US",
    "Holland": "NL",
    "Vatican": "VA",
    "Palestine": "PS",
}

#: CLDR territory codes that are not countries a contact lives in.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})

_OFFICIAL = ("official", "de_facto_official")
_CODE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_SPACES = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u00b4`\u2032"})


def fold(text: str, *, accents: bool = True) -> str:
    """Matching form of a name: NFKC, case-folded, punctuation and symbols as single spaces, trimmed.

    ``accents=False`` also drops combining marks ("Perú" -> "peru", "Français" -> "francais").
    Apostrophes of every kind count as punctuation ("Côte d’Ivoire" == "Côte d'Ivoire").
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    if not accents:
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in text)
    return _SPACES.sub(" ", text).strip()


def _country_fold(text: str, *, accents: bool = True) -> str:
    text = text.replace("&", " and ")
    words = fold(text, accents=accents).split(" ")
    return " ".join("saint" if word == "st" else word for word in words if word != "the")


def _name_variants(name: str) -> Iterable[str]:
    """The display name itself and, when it has a parenthetical part, the name without it."""
    yield name
    bare = re.sub(r"\s*\(.*?\)\s*", " ", name).strip()
    if bare and bare != name:
        yield bare


@lru_cache(maxsize=1)
def _locale_languages() -> frozenset[str]:
    """Base language codes Babel has locale data for ("en", "fr", "fil", ...)."""
    return frozenset(identifier.split("_")[0] for identifier in localedata.locale_identifiers())


def _tag_from_cldr(key: str) -> str | None:
    """CLDR language key ("pt_BR", "zh_Hant", "es_419") -> BCP 47 tag, or None if Babel cannot format it."""
    parts = key.split("_")
    if parts[0] not in _locale_languages():
        return None
    return "-".join(parts)


class _Fold(Protocol):
    def __call__(self, text: str, *, accents: bool = True) -> str: ...


def _name_index(
    names: Iterable[tuple[str, str]], aliases: Mapping[str, str], fold_name: _Fold
) -> tuple[dict[str, str], dict[str, str]]:
    """(accented fold -> value, accent-free fold -> value) from (value, display name) pairs, where the first
    pair to give a folded name wins (each name also without its parenthetical part); ``aliases``
    (name -> value) override them."""
    exact: dict[str, str] = {}
    loose: dict[str, str] = {}
    for value, name in names:
        for variant in _name_variants(name):
            exact.setdefault(fold_name(variant), value)
            loose.setdefault(fold_name(variant, accents=False), value)
    for alias, value in aliases.items():
        exact[fold_name(alias)] = value
        loose[fold_name(alias, accents=False)] = value
    return exact, loose


@lru_cache(maxsize=2)
def _language_index(displays: tuple[str, ...] = DISPLAY_LOCALES) -> tuple[dict[str, str], dict[str, str]]:
    """(accented fold -> tag, accent-free fold -> tag), built from the language names of ``displays``."""
    names = (
        (tag, name)
        for display in displays
        for key, name in Locale(display).languages.items()
        if (tag := _tag_from_cldr(key)) is not None
    )
    return _name_index(names, _LANGUAGE_ALIASES, fold)


def _tag_from_code(text: str) -> str | None:
    """ "fr", "FR", "pt-br", "pt_BR", "zh-hant-tw" -> normalised tag, if the language has locale data."""
    if not _CODE.match(text):
        return None
    parts = re.split(r"[-_]", text)
    language = parts[0].lower()
    aliases: Mapping[str, str] = get_global("language_aliases")
    language = aliases.get(language, language).split("_")[0]
    if language not in _locale_languages():
        return None
    tag = [language]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            tag.append(part.title())
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            tag.append(part.upper())
        else:
            return language  # a variant we do not keep: the language alone
    return "-".join(tag)


@lru_cache(maxsize=4096)
def language_tag(value: str) -> str | None:
    """BCP 47 tag for a language as written ("Français", "Inglés", "pt-br", "العربية"); ``None`` if blank/unknown.

    Codes are normalised ("FR" -> "fr", "pt_br" -> "pt-BR", deprecated "iw" -> "he"); names are looked up in
    the display names of :data:`DISPLAY_LOCALES` (accents kept first, then ignored). Never raises.
    """
    text = value.strip()
    if not text:
        return None
    tag = _tag_from_code(text)
    if tag:
        return tag
    return _looked_up(_language_index, fold, text)


def _is_country(code: str) -> bool:
    return len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES


@lru_cache(maxsize=2)
def _country_index(displays: tuple[str, ...] = DISPLAY_LOCALES) -> tuple[dict[str, str], dict[str, str]]:
    """(accented fold -> alpha-2, accent-free fold -> alpha-2) from the territory names of ``displays``."""
    names = (
        (code, name)
        for display in displays
        for code, name in Locale(display).territories.items()
        if _is_country(code)
    )
    return _name_index(names, _COUNTRY_ALIASES, _country_fold)


def _looked_up(
    index: Callable[[tuple[str, ...]], tuple[dict[str, str], dict[str, str]]], fold_name: _Fold, text: str
) -> str | None:
    """``text`` in ``index`` (accents kept, then ignored), first in the names of the first display locale
    alone: a name found there is what every locale's index gives too (the first locale wins, aliases
    override both), and the other locales' data (a tenth of a second to load) is read only for the others."""
    folded = fold_name(text)
    first = index(DISPLAY_LOCALES[:1])[0].get(folded)
    if first is not None:
        return first
    exact, loose = index(DISPLAY_LOCALES)
    return exact.get(folded) or loose.get(fold_name(text, accents=False))


@lru_cache(maxsize=1)
def _country_codes() -> frozenset[str]:
    return frozenset(code for code in Locale("en").territories if isinstance(code, str) and _is_country(code))


@lru_cache(maxsize=4096)
def country_code(value: str) -> str | None:
    """ISO 3166-1 alpha-2 code for a country as written ("Brasil", "Trinidad & Tobago", "NGA"); ``None`` if unknown.

    Accepts alpha-2 and alpha-3 codes, and names in any of :data:`DISPLAY_LOCALES` (accents, apostrophe style,
    "&"/"and", "St."/"Saint" and "the" do not matter). Never raises.
    """
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isalpha() and len(text) in (2, 3):
        upper = text.upper()
        if upper in _country_codes():
            return upper
        aliases: Mapping[str, list[str]] = get_global("territory_aliases")
        replacement = aliases.get(upper, [])
        if len(replacement) == 1 and replacement[0] in _country_codes():
            return replacement[0]
    return _looked_up(_country_index, _country_fold, text)


def country_zone(code: str, country_zones: Mapping[str, str]) -> str | None:
    """IANA zone name for a country (alpha-2), or ``None`` when it cannot be told.

    ``country_zones`` (``settings.country_zones``) wins; else CLDR's zone when the country has exactly one.
    A multi-zone country missing from ``country_zones`` gives ``None``.
    """
    code = code.strip().upper()
    if not code:
        return None
    if code in country_zones:
        return country_zones[code]
    zones: Mapping[str, list[str]] = get_global("territory_zones")
    candidates = zones.get(code, [])
    if len(candidates) == 1 and is_known_zone(candidates[0]):
        return canonical_zone_name(candidates[0])
    return None


@lru_cache(maxsize=1024)
def _official_languages(code: str) -> tuple[str, ...]:
    """Official (and de facto official) languages of a country, most spoken first, as BCP 47 tags."""
    data: Mapping[str, Mapping[str, Mapping[str, object]]] = get_global("territory_languages")
    ranked: list[tuple[float, str]] = []
    for key, info in data.get(code, {}).items():
        tag = _tag_from_cldr(key)
        percent = info.get("population_percent") or 0.0
        if tag and info.get("official_status") in _OFFICIAL and isinstance(percent, (int, float)):
            ranked.append((float(percent), tag))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    return tuple(tag for _, tag in ranked)


def country_language(code: str, offered: Iterable[str] = ()) -> str | None:
    """A country's default language as a BCP 47 tag, or ``None`` when CLDR names no official one.

    The most-spoken official language among ``offered`` (tags; compared by base language) when there is one
    (India with offered ["en", ...] -> "en", Haiti -> "fr"), else the most-spoken official language overall
    (Brazil -> "pt"). Only languages Babel has locale data for are considered.
    """
    official = _official_languages(code.strip().upper())
    if not official:
        return None
    bases = {tag.split("-")[0].lower() for tag in offered}
    for tag in official:
        if tag.split("-")[0] in bases:
            return tag
    return official[0]


__all__ = ["DISPLAY_LOCALES", "country_code", "country_language", "country_zone", "fold", "language_tag"]
