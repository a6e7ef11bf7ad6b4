"""Language, country and zone values as organisers write them (pure functions, table tests)."""

from __future__ import annotations

import pytest

from mailer.audience.locales import country_code, country_language, country_zone, fold, language_tag

OFFERED = ("en", "es", "fr", "ar")
CONFIGURED_ZONES = {"MX": "America/Mexico_City", "AU": "Australia/Sydney", "BR": "America/Sao_Paulo"}


@pytest.mark.parametrize(
    ("written", "tag"),
    [
        ("French", "fr"),
        ("Français", "fr"),
        ("francais", "fr"),
        ("fr", "fr"),
        ("FR", "fr"),
        (" English ", "en"),
        ("EN", "en"),
        ("Inglés", "en"),
        ("anglais", "en"),
        ("Arabic", "ar"),
        ("العربية", "ar"),
        ("Portuguese", "pt"),
        ("Portugués", "pt"),
        ("Português", "pt"),
        ("Español", "es"),
        ("Spanish", "es"),
        ("castellano", "es"),
        ("Dutch", "nl"),
        ("Japanese", "ja"),
        ("pt-br", "pt-BR"),
        ("pt_BR", "pt-BR"),
        ("Brazilian Portuguese", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("iw", "he"),  # deprecated code, CLDR alias
        ("", None),
        ("   ", None),
        ("Klingon", None),  # a CLDR display name without locale data: nothing can be rendered in it
        ("xx", None),
        ("n/a", None),
    ],
)
def test_language_tag(written: str, tag: str | None) -> None:
    assert language_tag(written) == tag


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("Côte d'Ivoire", "CI"),
        ("Côte d’Ivoire", "CI"),
        ("Cote d'Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("Costa do Marfim", "CI"),
        ("Trinidad & Tobago", "TT"),
        ("Trinidad and Tobago", "TT"),
        ("Trinidad y Tobago", "TT"),
        ("México", "MX"),
        ("Mexico", "MX"),
        ("Brasil", "BR"),
        ("Perú", "PE"),
        ("Panamá", "PA"),
        ("Saint Lucia", "LC"),
        ("St. Lucia", "LC"),
        ("Sainte-Lucie", "LC"),
        ("St Vincent and the Grenadines", "VC"),
        ("The Bahamas", "BS"),
        ("Bahamas", "BS"),
        ("DR Congo", "CD"),
        ("Cabo Verde", "CV"),
        ("Cape Verde", "CV"),
        ("Timor-Leste", "TL"),
        ("Sri Lanka", "LK"),
        ("NG", "NG"),
        ("ng", "NG"),
        ("NGA", "NG"),
        ("USA", "US"),
        ("Estados Unidos", "US"),
        ("", None),
        ("Atlantis", None),
        ("European Union", None),  # a CLDR territory, not a country
    ],
)
def test_country_code(written: str, code: str | None) -> None:
    assert country_code(written) == code


@pytest.mark.parametrize(
    ("code", "zone"),
    [
        ("NG", "Africa/Lagos"),
        ("CI", "Africa/Abidjan"),
        ("LC", "America/St_Lucia"),
        ("TT", "America/Port_of_Spain"),
        ("np", "Asia/Kathmandu"),
        ("MX", "America/Mexico_City"),  # several zones: the configured one
        ("AU", "Australia/Sydney"),
        ("ID", None),  # several zones, none configured
        ("", None),
        ("ZZ", None),
    ],
)
def test_country_zone(code: str, zone: str | None) -> None:
    assert country_zone(code, CONFIGURED_ZONES) == zone


@pytest.mark.parametrize(
    ("code", "offered", "language"),
    [
        ("NG", OFFERED, "en"),
        ("MX", OFFERED, "es"),
        ("SN", OFFERED, "fr"),
        ("EG", OFFERED, "ar"),
        ("MA", OFFERED, "ar"),  # Arabic official and most spoken; French de facto official
        ("HT", OFFERED, "fr"),  # Haitian Creole is more spoken but not offered
        ("IN", OFFERED, "en"),  # Hindi is more spoken but not offered
        ("IN", (), "hi"),
        ("BR", OFFERED, "pt"),  # no offered language is official: the most spoken official one
        ("CA", ("fr",), "fr"),
        ("", OFFERED, None),
        ("ZZ", OFFERED, None),
    ],
)
def test_country_language(code: str, offered: tuple[str, ...], language: str | None) -> None:
    assert country_language(code, offered) == language


@pytest.mark.parametrize(
    ("text", "accents", "folded"),
    [
        ("  Côte d’Ivoire ", True, "côte d ivoire"),
        ("Côte d'Ivoire", False, "cote d ivoire"),
        ("E-mail address", True, "e mail address"),
        ("given_name", True, "given name"),
        ("Correo electrónico", False, "correo electronico"),
        ("Country/Region Name", True, "country region name"),
    ],
)
def test_fold(text: str, accents: bool, folded: str) -> None:
    assert fold(text, accents=accents) == folded
