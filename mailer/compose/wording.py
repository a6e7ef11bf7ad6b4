"""A language's shared wording, ``_common/<lang>.j2``: plain strings (no macros), the templates' ``t``.

It must set series_name, region_names, organiser_names, session_title_format, session_ref_format and
session_short_format (:data:`WORDING_NAMES`, checked at start); the three ``*_format`` patterns may use only
``{title}`` and ``{region}``. A regional variant without a file of its own uses its family's ("pt-PT" -> "pt").
Shared wording holds no macros on purpose: a macro from a non-HTML file called from an HTML part would
return its data unescaped, so everything built from data is computed by the renderer and escaped by the HTML
part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailer.errors import RenderError

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
class Wording:
    """A language's ``_common/<lang>.j2``: the module (the context's ``t``) and what the renderer reads from it."""

    module: Any
    title_format: str
    ref_format: str
    short_format: str
    region_names: dict[str, str]
    organiser_names: dict[str, str]


def wording_of(module: Any, name: str) -> Wording:
    """The :class:`Wording` of the loaded template module ``module`` (file ``name``). Raises RenderError
    naming the file when a name of :data:`WORDING_NAMES` is not set or a ``*_format`` uses another field."""
    missing = [key for key in WORDING_NAMES if not hasattr(module, key)]
    if missing:
        raise RenderError(f"{name}: {missing[0]} is not set")
    wording = Wording(
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
            raise RenderError(f"{name}: a *_format may use only {{title}} and {{region}} ({exc!r})") from None
    return wording


__all__ = ["WORDING_NAMES", "Wording", "wording_of"]
